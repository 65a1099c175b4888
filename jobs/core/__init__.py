"""Plumbing that runs any stage: config, session, lake, runner, failures, the DAG registry
and the readers stages share."""
