"""TLS for the broker link: the client context and one clear sentence when a handshake fails."""

import logging
import ssl

from ..errors import ConfigError
from .settings import TlsSettings

log = logging.getLogger(__name__)


def client_context(tls: TlsSettings) -> ssl.SSLContext:
    """Verification on unless `insecure`; files are checked to exist by MqttSettings."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if tls.ca_file:
            ctx.load_verify_locations(cafile=tls.ca_file)
        else:
            ctx.load_default_certs()
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (ssl.SSLError, OSError) as why:
        raise ConfigError("mqtt.tls: cannot load %s: %s" % (
            ", ".join(f for f in (tls.ca_file, tls.cert_file, tls.key_file) if f), why))
    if tls.insecure:
        log.warning("mqtt.tls.insecure is true: the broker's certificate is NOT verified; anyone "
                    "on the network path can impersonate the broker. Use it only for tests")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def failure_message(why: Exception, address: str) -> str:
    """What went wrong in words a person can act on; no traceback."""
    text = str(why)
    if isinstance(why, ssl.CertificateError) or "CERTIFICATE_VERIFY_FAILED" in text \
            or "certificate verify failed" in text:
        return ("TLS handshake with broker %s failed: certificate verify failed (%s) — check "
                "mqtt.tls.ca_file, and that mqtt.host matches the broker certificate" % (
                    address, getattr(why, "verify_message", None) or text))
    return ("TLS handshake with broker %s failed: %s — check mqtt.tls (ca_file, cert_file, "
            "key_file)" % (address, text))
