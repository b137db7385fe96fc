"""A Google Cloud Storage API on localhost for the bucket tests: `gcp-storage-emulator` (Google's
JSON API, in memory) in its own process on 127.0.0.1, with one bucket; stopped by its pid.

`STORAGE_EMULATOR_HOST`, the variable Google's own clients read, is all that aims ct5x at it.

The emulator's media downloads lack the `x-goog-generation` header that Cloud Storage sends with
every object it serves. TensorStore reads an object's generation from it (OCDBT, the layout of
Orbax's and T5X's checkpoints, refuses an object without one), so the emulator's process, started
from this file, adds the header to its download handler; nothing else of it is changed.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request

BUCKET = "ct5x-test"
START_TIMEOUT_S = 30


class Emulator:
    """A running emulator: its URL (STORAGE_EMULATOR_HOST) and its process."""

    def __init__(self, log_path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")  # noqa: SIM115 -- open while the emulator runs
        self.process = subprocess.Popen(
            [sys.executable, __file__, "start", "--host", "127.0.0.1", "--port", str(self.port),
             "--in-memory", "--default-bucket", BUCKET, "--quiet"],
            stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def wait_until_up(self) -> str | None:
        """None once it answers its health check, else why it did not start."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"gcp-storage-emulator exited with {self.process.returncode}"
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1):
                    return None
            except OSError:
                time.sleep(0.1)
        return f"gcp-storage-emulator did not answer on {self.url} in {START_TIMEOUT_S} s"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _serve(args: list[str]) -> None:
    """The emulator's command line, with generations on its downloads."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.__main__ import main
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    original = objects.download

    def download(request, response, storage, *rest, **kwargs):
        try:
            stored = storage.get_file_obj(request.params["bucket_name"],
                                          request.params["object_id"])
            response["x-goog-generation"] = stored["generation"]
            response["x-goog-metageneration"] = stored["metageneration"]
        except NotFound:
            pass  # the handler answers 404
        original(request, response, storage, *rest, **kwargs)

    objects.download = download  # `get` with alt=media calls it by name
    for _, methods in server.HANDLERS:
        for method, handler in methods.items():
            if handler is original:
                methods[method] = download
    main(args)


if __name__ == "__main__":
    _serve(sys.argv[1:])
