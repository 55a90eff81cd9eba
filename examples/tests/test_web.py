"""Image tests for examples/web.yml (pytest-testinfra). `imgpipe bake` runs them against a
fresh boot of the captured image, before anything is published; a failure fails the bake."""

FETCH = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1/').read().decode())\""


def test_nginx_is_installed_and_starts_on_boot(host):
    assert host.package("nginx-light").is_installed
    assert host.service("nginx").is_enabled
    assert host.service("nginx").is_running


def test_nginx_serves_the_page(host):
    page = host.check_output(FETCH)
    assert "<title>" in page and "Image web, build " in page
