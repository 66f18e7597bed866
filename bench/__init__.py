"""`make bench`: the end-to-end benchmark of usersecrets (see bench/run.py and issue 6)."""
