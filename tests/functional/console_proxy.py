# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""nova-serialproxy in the test process, and a websocket client for it.

The proxy is Nova's own: ``NovaWebSocketProxy`` with its
``NovaProxyRequestHandler``, built with the arguments ``nova.cmd.baseproxy``
gives it. Only its accept loop is ours: websockify's ``start_server``
installs signal handlers (main thread only) and forks a process per
client, while the tokens it validates live in the test's in-memory
database, so each client is handled in a thread of this process.
"""

import select
import threading
import time
from urllib import parse

import nova.conf
from nova.console import websocketproxy
from websockify import websocket

CONF = nova.conf.CONF


class SerialProxy(object):
    """Nova's serial console proxy listening on ``host``:``port``."""

    def __init__(self, host, port):
        self.server = websocketproxy.NovaWebSocketProxy(
            listen_host=host, listen_port=port, source_is_ipv6=False,
            cert='self.pem', key=None, ssl_only=False,
            ssl_ciphers=CONF.console.ssl_ciphers,
            ssl_minimum_version=CONF.console.ssl_minimum_version,
            daemon=False, record=None, traffic=False, web=None,
            file_only=True,
            RequestHandlerClass=websocketproxy.NovaProxyRequestHandler)
        self.listener = self.server.socket(host, port, False)
        self.stopping = threading.Event()
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self.acceptor.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.acceptor.join(10)
        for thread in self.threads:
            thread.join(10)
        self.listener.close()

    def _accept(self):
        while not self.stopping.is_set():
            if not select.select([self.listener], [], [], 0.2)[0]:
                continue
            sock, address = self.listener.accept()
            thread = threading.Thread(target=self._serve,
                                      args=(sock, address), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, sock, address):
        try:
            self.server.top_new_client(sock, address)
        finally:
            sock.close()


class _Client(websocket.WebSocket):
    """websockify's client, which requests the URL's path only: the
    console's token is in its query."""

    query = ''

    def send_request(self, type, path):
        super().send_request(type, path + (
            '?' + self.query if self.query else ''))


def connect(url, timeout=30):
    """A websocket client connected to ``url`` (the remote console's URL,
    its token in the query), speaking the ``binary`` subprotocol as
    Nova's serial console clients do."""
    client = _Client()
    client.query = parse.urlparse(url).query
    client.connect(url, protocols=['binary'])
    client.settimeout(timeout)
    return client


def read_until(client, text, timeout):
    """What the websocket gives until ``text`` came, the other end closed
    or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    output = b''
    client.settimeout(1)
    while text.encode() not in output and time.monotonic() < deadline:
        try:
            data = client.recv()
        except TimeoutError:
            continue
        if data is None:
            break
        output += data
    return output.decode(errors='replace')
