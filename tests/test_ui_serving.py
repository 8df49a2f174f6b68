"""skillproxy/ui/__init__.py: the review page's files are served from the package, offline,
under a policy that lets the page run only its own files."""

from __future__ import annotations

import httpx

from tests.harness import RunningProxy


def test_the_page_is_served_with_its_policy_and_the_root_leads_to_it(proxy: RunningProxy) -> None:
    page = httpx.get(proxy.url + "/ui/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for start in ("/", "/ui"):
        moved = httpx.get(proxy.url + start, follow_redirects=True)
        assert moved.status_code == 200 and str(moved.url).endswith("/ui/")
    for missing in ("/ui/nothing.js", "/ui/index.exe", "/ui/..%2Fapp.py"):
        assert httpx.get(proxy.url + missing).status_code == 404, missing
