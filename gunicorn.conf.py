"""gunicorn settings for the Procfile's web process.

prometheus_client needs PROMETHEUS_MULTIPROC_DIR before it is first imported, so that every worker
process writes its metrics where /metrics can add them up; this sets it for the workers.
"""
import os
import shutil
import tempfile


def on_starting(server):
    path = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="telehealth-metrics-"))
    shutil.rmtree(path, ignore_errors=True)  # counters from a previous run would be added in
    os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
