"""Spark side of selfalign.

    core/    plumbing that runs any stage: config, session, lake, context, the stage
             contract and runner, failures, the DAG registry, readers stages share
    stages/  one module per stage: its declaration and transform (no stage imports
             another stage or the CLI)
    ops/     reusable Spark algorithms (LSH banding, connected components)
    tools/   operator tools: status, report, sample corpus, benchmark download
    cli.py   the `selfalign` command; submit.py, the one spark-submit entry point
"""
