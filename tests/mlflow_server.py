"""A real `mlflow server` for the tests, in a process group of its own."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.project import free_port


class MlflowServer:
    """A real `mlflow server` on a free local port with the store `database` (a SQLAlchemy
    URL), its artifacts in `folder`; started, stopped and started again at will."""

    def __init__(self, database, folder):
        self.database, self.folder = database, Path(folder)
        self.uri = f"http://127.0.0.1:{free_port()}"
        self.process = None

    def start(self):
        port = self.uri.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--backend-store-uri",
                self.database,
                "--artifacts-destination",
                str(self.folder),
            ],
            cwd=self.folder.parent,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return self
            except OSError:
                assert time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)

    def kill(self):
        """SIGKILL to the server and its workers: requests in flight die with it."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
