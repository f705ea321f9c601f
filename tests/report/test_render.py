"""The suite report's text: failing rows last, and a run that stopped early still gets a row."""

from interp_pipeline.report.model import ExperimentReport, ExpectRow
from interp_pipeline.report.render import to_html, to_markdown


def test_failing_rows_come_last_and_a_run_without_rows_is_reported_by_its_error():
    reports = [
        ExperimentReport("a", "a", rows=[ExpectRow("s.m", ">= 1", 0.5, False, "paper, fig. 1", "half of it"),
                                         ExpectRow("s.n", ">= 1", 2.0, True)], seconds=1.5),
        ExperimentReport("b", "b", status=2, message="error: model.name: model 'gpt2-small' cannot be loaded"),
        ExperimentReport("c", "c", rows=[ExpectRow("s.k", "3 ± 0.1", 3.05, True, "demo", "rounding")]),
    ]
    markdown = to_markdown(reports, "t")
    ok_part, failing = markdown.split("## Not met (2)")
    assert "| a | s.n |" in ok_part and "| c | s.k | 3 ± 0.1 | 3.05 | ok | demo | rounding |" in ok_part
    assert failing.index("| a | s.m | >= 1 | 0.5 | **FAIL** | paper, fig. 1 | half of it |") < failing.index("| b | (run)")
    assert "| b | (run) | exit 0 | missing | **FAIL** |  | error: model.name: model 'gpt2-small'" in failing
    assert "| b | +experiment=b | config error | 0.0 |  | 0/0 |" in ok_part
    assert "3 experiment(s), 4 expectation(s): 2 not met" in markdown
    html = to_html(reports, "t")
    assert html.count("<tr class=\"fail\">") == 2 + 2  # two runs, two rows
    assert "No figures." in html
