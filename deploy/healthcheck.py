"""Container health check: GET the daemon's /livez and exit 0 on 200, 1 otherwise.

Used by the Dockerfile's HEALTHCHECK and compose.yaml. Only the standard library (the image
has no curl). The URL is SIPWATCH_LIVEZ_URL, default http://127.0.0.1:9160/livez, the
daemon's default HTTP bind. Proxies are ignored on purpose: an http_proxy set for the
container must not turn a loopback check into a request to the proxy.

Exit codes follow the HEALTHCHECK contract: 0 healthy, 1 unhealthy (2 is reserved).
"""

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9160/livez"


def main() -> int:
    url = os.environ.get("SIPWATCH_LIVEZ_URL") or DEFAULT_URL
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=3.0) as reply:
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
