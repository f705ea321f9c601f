"""Screenshots of the MLflow UI for the README (docs/mlflow/*.png), from a store made by short runs.

    export INTERP_PIPELINE_OUTPUTS=/tmp/mlflow-demo OMP_NUM_THREADS=1
    python -m interp_pipeline +experiment=quickstart model.train.steps=300 \\
        sae_data.params.n_sequences=1024 sae.training_tokens=40960 sae.l1_warm_up_steps=2 sae.lr_decay_steps=8
    python -m interp_pipeline -m +experiment=smoke seed=0,1,2
    mlflow server --backend-store-uri sqlite:///$INTERP_PIPELINE_OUTPUTS/mlflow.db --host 127.0.0.1 --port 5077 &
    python docs/mlflow/screenshots.py sqlite:///$INTERP_PIPELINE_OUTPUTS/mlflow.db http://127.0.0.1:5077

(300 training steps are too few for quickstart's expect: the run shows how a failed
expectation looks.) Needs chromium (apt-get install -y chromium).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).parent))
from cdp import Browser  # noqa: E402

HERE = Path(__file__).parent
CLICK = """(label) => { const e = Array.from(document.querySelectorAll('button,[role=button],label,a,span'))
  .find(x => (x.getAttribute('aria-label') || '') === label || (x.innerText || '').trim() === label);
  if (e) { e.click(); return true } return false }"""
# Oldest first: a parent's stage runs then list in pipeline order, under it (the default, newest
# first, lists them in reverse); their "01 ..." prefixes sort the same way by name.
OLDEST_FIRST = "?orderByKey=attributes.start_time&orderByAsc=true&startTime=ALL&lifecycleFilter=Active"


def click(browser: Browser, label: str) -> bool:
    return bool(browser.js(f"({CLICK})({label!r})"))


def runs_page(browser: Browser, server: str, experiment_id: str, expand: bool) -> None:
    browser.goto(f"{server}/#/experiments/{experiment_id}/runs{OLDEST_FIRST}", settle=5)
    browser.wait_for("document.querySelectorAll('[data-component-id*=runnamecellrenderer]').length > 0")
    click(browser, "Close")  # the assistant panel
    if expand:
        browser.js("document.querySelector('button[data-component-id*=runnamecellrenderer]').click()")
    time.sleep(2)
    # Widen the Run Name column (its resize handle is the right edge of its header) so names show whole.
    edge = browser.js("""(() => { const h = Array.from(document.querySelectorAll('[role=columnheader]'))
        .find(e => (e.innerText || '').trim().startsWith('Run Name')); if (!h) return null;
        const r = h.getBoundingClientRect(); return [r.right - 2, r.top + r.height / 2] })()""")
    if edge:
        browser.drag(edge[0], edge[1], edge[0] + 330, edge[1])
        time.sleep(1)


def main() -> None:
    store, server = sys.argv[1], sys.argv[2].rstrip("/")
    client = MlflowClient(store)
    quickstart = client.get_experiment_by_name("quickstart").experiment_id
    smoke = client.get_experiment_by_name("smoke").experiment_id
    patching = client.search_runs([quickstart], "tags.stage = 'patching'", max_results=1)[0].info.run_id

    browser = Browser(1600, 1000)
    try:
        browser.goto(f"{server}/#/experiments", settle=5)
        click(browser, "Close")
        click(browser, "Model training")  # the UI's mode for runs, params and metrics (kept for the next pages)
        time.sleep(1)
        browser.screenshot(HERE / "experiments.png")

        runs_page(browser, server, quickstart, expand=True)
        browser.screenshot(HERE / "runs.png")

        runs_page(browser, server, smoke, expand=False)
        browser.screenshot(HERE / "sweep.png")

        browser.goto(f"{server}/#/experiments/{quickstart}/runs/{patching}/artifacts", settle=5)
        click(browser, "Close")
        browser.js("document.querySelector('[artifact-name=\"patching.html\"]').parentElement.click()")
        # The page loads plotly.js from the server (a file beside it cannot be reached from MLflow's viewer).
        time.sleep(8)
        browser.screenshot(HERE / "artifacts.png")
    finally:
        browser.close()


if __name__ == "__main__":
    main()
