"""The local stand-in for Google's identity: ID tokens signed with a key
generated at start, and its certificate served in the shape of Google's certs
endpoint (https://www.googleapis.com/oauth2/v1/certs: `{key id: PEM
certificate}`), so that the functions verify them with the very path they use
in production (`google.oauth2.id_token.verify_token(..., certs_url=...)`).

The Cloud Tasks emulator signs its timers' OIDC tokens with it; on the local
stack, `POST /token {"email", "audience"}` also mints a token for whoever
holds the issuer's secret (the stack's config file, mode 0600): that is how
the CLI logs the local user in. Nothing else mints tokens."""

import datetime
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

ISSUER = "https://accounts.google.com"
TOKEN_LIFETIME = 3600
CERTS_PATH = "/oauth2/v1/certs"
TOKEN_PATH = "/token"
MAX_BODY = 4096
#: Short, so that a verifier caching the certificates follows an emulator restarted with a new key.
CERTS_MAX_AGE = 300


class Signer:
    """An RSA key and a self-signed certificate for it, in place of Google's signing keys."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        certificate = _self_signed(key)
        self.key_id = certificate.fingerprint(hashes.SHA1()).hex()
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        self._signer = crypt.RSASigner.from_string(private_pem, key_id=self.key_id)

    def certs(self) -> dict[str, str]:
        return {self.key_id: self.certificate_pem}

    def token(self, email: str, audience: str, now: float, lifetime: int = TOKEN_LIFETIME,
              issuer: str = ISSUER) -> str:
        """An ID token with the claims Google puts in one (tests vary the
        lifetime and issuer to make bad ones)."""
        subject = service_account_id(email)
        payload = {
            "iss": issuer, "aud": audience, "azp": subject, "sub": subject, "email": email,
            "email_verified": True, "iat": int(now), "exp": int(now) + lifetime,
        }
        return jwt.encode(self._signer, payload).decode()


def service_account_id(email: str) -> str:
    """A stable 21-digit number standing for the account's unique id."""
    return str(int.from_bytes(hashlib.sha256(email.encode()).digest()[:8]) % 10 ** 21).zfill(21)


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloud-tasks-emulator")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))


class IssuerServer:
    """Serves the certificates at CERTS_PATH and, when given a secret, mints
    tokens at TOKEN_PATH for callers presenting it; from a daemon thread."""

    def __init__(self, host: str, port: int, signer: Signer, secret: str | None = None) -> None:
        certs = json.dumps(signer.certs()).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.partition("?")[0] != CERTS_PATH:
                    self.send_error(404)
                    return
                self._answer(certs, {"Cache-Control": f"public, max-age={CERTS_MAX_AGE}"})

            def do_POST(self) -> None:
                if self.path != TOKEN_PATH or secret is None:
                    self.send_error(404)
                    return
                presented = self.headers.get("Authorization", "").partition(" ")[2].encode()
                if not hmac.compare_digest(presented, secret.encode()):
                    self.send_error(401)
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    asked = json.loads(self.rfile.read(min(length, MAX_BODY)))
                    email, audience = str(asked["email"]), str(asked["audience"])
                except (ValueError, KeyError, TypeError):
                    self.send_error(400)
                    return
                token = signer.token(email, audience, time.time())
                self._answer(json.dumps({"id_token": token, "expires_in": TOKEN_LIFETIME}).encode())

            def _answer(self, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.certs_url = self.url + CERTS_PATH
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-issuer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
