"""The one spark-submit entry point: the `selfalign` command line, so a stage runs the same
way from the CLI, `spark-submit`, Databricks (python_wheel_task, entry point `selfalign`)
and EMR:

    spark-submit [spark options] jobs/submit.py run --stages extract --config emr.yaml

Any `selfalign` command works here (run, export, evaluate, report, status, ...).
"""

from jobs.cli import main

if __name__ == "__main__":
    main()
