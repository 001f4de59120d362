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

"""A UNIX socket relaying to libvirtd: cutting it is libvirtd going away.

The tests must not stop the machine's libvirtd (other tests use it), so a
compute service under test talks to libvirtd through this relay; cutting the
relay closes every connection and refuses new ones, which is what the driver
sees when libvirtd dies or is unreachable.
"""

import os
import socket
import tempfile
import threading

import fixtures

LIBVIRT_SOCKET = '/var/run/libvirt/libvirt-sock'
ACCEPT_POLL = 0.2


class LibvirtSocketProxy(fixtures.Fixture):
    def __init__(self, target=LIBVIRT_SOCKET):
        super().__init__()
        self.target = target

    def _setUp(self):
        self.dir = tempfile.mkdtemp(prefix='kvmx-proxy-')
        self.path = os.path.join(self.dir, 'libvirt-sock')
        self._lock = threading.Lock()
        self._sockets = []
        self._listener = None
        self.restore()
        self.addCleanup(os.rmdir, self.dir)
        self.addCleanup(self.cut)

    def restore(self):
        """Accept connections again: libvirtd is back."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(8)
        # accept() wakes up now and then to see whether the relay was cut:
        # closing a socket does not wake a thread blocked in accept() on
        # it, and while that thread holds it, a connection already queued
        # is neither accepted nor refused, and its client waits forever.
        listener.settimeout(ACCEPT_POLL)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,),
                         daemon=True).start()

    @property
    def uri(self):
        return 'qemu+unix:///system?socket=%s' % self.path

    def cut(self):
        """Close the relay and every connection through it."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            if os.path.exists(self.path):
                os.unlink(self.path)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener):
        while True:
            try:
                client, _addr = listener.accept()
            except socket.timeout:
                if self._listener is listener:
                    continue
                listener.close()  # the last hold: queued clients refused
                return
            except OSError:
                return  # cut
            client.settimeout(None)
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst),
                                 daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
