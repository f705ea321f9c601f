"""The ground floor: small helpers every other package may import, and that import none of ours.

errors (the user-facing errors and their one-line wording), exit_status (the exit statuses and a
sweep's choice among them), paths (where configs, pipelines and outputs live), plugins (entry
points), devices and threads (where and on how many threads torch runs), hf_hub_access (whether
the hub can be reached), progress (bars and progress log lines), html_page (the one HTML page
writer).
"""
