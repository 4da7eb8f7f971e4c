"""The nginx configurations that ship: the production server block and the
local stack's rendering both pass `nginx -t`."""
import os
import re
import socket
import subprocess

import pytest

from stack import ROOT, free_port

NGINX_DIR = os.path.join(ROOT, "nginx")
SNIPPETS = ["security_headers", "api_headers", "ui_headers", "api_params",
            "errors.conf", "locations.conf"]


def nginx_test(prefix, conf, error_log):
    return subprocess.run(["nginx", "-t", "-p", str(prefix), "-c", str(conf), "-e", str(error_log)],
                          capture_output=True, text=True, timeout=30)


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def render_production(tmp):
    """crosspost.conf as an operator would install it, with every path in
    tmp and (since `nginx -t` binds) loopback listen addresses."""
    snippets = tmp / "nginx"
    snippets.mkdir()
    for name in SNIPPETS:
        with open(os.path.join(NGINX_DIR, name)) as f:
            (snippets / name).write_text(f.read().replace("@NGINX_DIR@", str(snippets)))

    cert, key = tmp / "fullchain.pem", tmp / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=crosspost.example.com", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)

    with open(os.path.join(NGINX_DIR, "crosspost.conf")) as f:
        text = f.read()
    http_port, https_port = free_port(), free_port()
    replacements = [
        ("@NGINX_DIR@", str(snippets)),
        ("@API_SOCKET@", str(tmp / "api.sock")),
        ("@WEB_ROOT@", os.path.join(ROOT, "web")),
        ("/etc/ssl/crosspost/fullchain.pem", str(cert)),
        ("/etc/ssl/crosspost/privkey.pem", str(key)),
        ("/var/log/nginx/", str(tmp) + "/"),
    ]
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    ipv6 = have_ipv6_loopback()
    listens = [
        ("listen 80;", "listen 127.0.0.1:%d;" % http_port),
        ("listen [::]:80;", "listen [::1]:%d;" % http_port if ipv6 else ""),
        ("listen 443 ssl http2;", "listen 127.0.0.1:%d ssl http2;" % https_port),
        ("listen [::]:443 ssl http2;", "listen [::1]:%d ssl http2;" % https_port if ipv6 else ""),
    ]
    for old, new in listens:
        assert old in text, old
        text = text.replace(old, new)
    assert not re.search(r"@[A-Z_]+@", text), re.findall(r"@[A-Z_]+@", text)
    for addr in re.findall(r"^\s*listen\s+(\S+)", text, re.M):
        assert addr.startswith(("127.0.0.1:", "[::1]:")), "not loopback: " + addr
    server = tmp / "crosspost.conf"
    server.write_text(text)

    (tmp / "nginx.conf").write_text("""
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log;
events { worker_connections 64; }
http {
    client_body_temp_path %(tmp)s/body;
    fastcgi_temp_path %(tmp)s/fastcgi;
    proxy_temp_path %(tmp)s/proxy;
    uwsgi_temp_path %(tmp)s/uwsgi;
    scgi_temp_path %(tmp)s/scgi;
    include %(server)s;
}
""" % {"tmp": tmp, "server": server})
    return tmp / "nginx.conf"


def test_production_config_passes_nginx_t(tmp_path):
    conf = render_production(tmp_path)
    r = nginx_test(tmp_path, conf, tmp_path / "error.log")
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


def test_production_config_check_can_fail(tmp_path):
    # The same check rejects a broken rendering (a snippet that is missing).
    conf = render_production(tmp_path)
    os.unlink(tmp_path / "nginx" / "errors.conf")
    r = nginx_test(tmp_path, conf, tmp_path / "error.log")
    assert r.returncode != 0
    assert "errors.conf" in r.stderr


def test_local_config_passes_nginx_t(stack, tmp_path):
    prefix = os.path.join(stack.var, "nginx")
    conf = os.path.join(prefix, "nginx.conf")
    assert os.path.exists(conf)
    with open(conf) as f:
        text = f.read()
    assert not re.search(r"@[A-Z_]+@", text)
    assert "listen 127.0.0.1:%d;" % stack.port in text
    r = nginx_test(prefix, conf, tmp_path / "error.log")
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


@pytest.mark.parametrize("name", SNIPPETS + ["crosspost.conf", "local.conf.in"])
def test_no_named_error_location_for_early_errors(name):
    # 400 and 414 can happen before nginx has a URI; a named location then
    # fails with a 500 (see errors.conf).
    with open(os.path.join(NGINX_DIR, name)) as f:
        text = f.read()
    for line in text.splitlines():
        if line.strip().startswith("error_page"):
            codes = line.split()[1:-1]
            if "400" in codes or "414" in codes:
                assert not line.split()[-1].rstrip(";").startswith("@"), line
