"""
A real nginx run with the shipped examples/nginx/incoming.conf, its ports
pointed at the servers of a test.
"""

import os
import re
import socket
import subprocess
import time

from harness import ROOT, free_port

SHIPPED_CONF = ROOT / "examples" / "nginx" / "incoming.conf"


def site_conf(listen_port, frontend_port, app_port):
    """
    The shipped server configuration, with only its ports changed.
    """
    conf = SHIPPED_CONF.read_text()
    replacements = [
        (r"listen 80;", f"listen 127.0.0.1:{listen_port};"),
        (r"server 127\.0\.0\.1:4000;", f"server 127.0.0.1:{frontend_port};"),
        (r"server 127\.0\.0\.1:8080;", f"server 127.0.0.1:{app_port};"),
    ]
    for pattern, replacement in replacements:
        conf, count = re.subn(pattern, replacement, conf)
        assert count == 1, f"{pattern} not found once in {SHIPPED_CONF}"
    return conf


class Nginx:
    def __init__(self, directory, frontend_port, app_port):
        self.directory = directory
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "incoming.conf").write_text(site_conf(self.port, frontend_port, app_port))
        user = "user root;" if os.getuid() == 0 else ""
        (directory / "nginx.conf").write_text(
            f"""
            {user}
            daemon off;
            worker_processes 1;
            pid {directory}/nginx.pid;
            error_log {directory}/error.log;
            events {{ worker_connections 256; }}
            http {{
                access_log off;
                client_body_temp_path {directory}/body;
                proxy_temp_path {directory}/proxy;
                fastcgi_temp_path {directory}/fastcgi;
                uwsgi_temp_path {directory}/uwsgi;
                scgi_temp_path {directory}/scgi;
                include {directory}/incoming.conf;
            }}
            """
        )
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        conf = str(self.directory / "nginx.conf")
        subprocess.run(["nginx", "-t", "-p", str(self.directory), "-c", conf], check=True, capture_output=True)
        self.process = subprocess.Popen(["nginx", "-p", str(self.directory), "-c", conf])
        self._wait_listening()
        return self

    def _wait_listening(self, timeout=30):
        # nginx says nothing when it is ready; its port accepting is the sign.
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, (self.directory / "error.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.05)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
