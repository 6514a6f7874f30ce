"""Container healthcheck: exit 0 only when the proxy's /ready says its upstreams answer."""
import sys
import urllib.request

try:
    with urllib.request.urlopen("http://127.0.0.1:8080/ready", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as error:  # any failure means "not healthy"; the reason goes to the health log
    print(f"proxy not ready: {error}", file=sys.stderr)
    sys.exit(1)
