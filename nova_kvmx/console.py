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

"""Consoles of a guest: the serial console log and VNC."""

import os

import nova.conf
from nova.console import type as ctype
from nova import exception
import nova.privsep.path

from nova_kvmx import safe_xml

CONF = nova.conf.CONF


def console_output(log_path, max_bytes):
    """The last ``max_bytes`` of the serial console log.

    virtlogd writes the log as root, so it is read through Nova's privsep
    helper, as Nova's libvirt driver does.
    """
    if not os.path.exists(log_path):
        # As Nova's libvirt driver: no log yet, no output.
        return ''
    data, _remaining = nova.privsep.path.last_bytes(log_path, max_bytes)
    return data


def vnc_console(domain_xml):
    """The VNC console of a running domain, from the port libvirt chose."""
    doc = safe_xml.fromstring(domain_xml)
    graphics = doc.find("./devices/graphics[@type='vnc']")
    port = graphics.get('port') if graphics is not None else None
    if port is None or int(port) < 0:
        raise exception.ConsoleTypeUnavailable(console_type='vnc')
    return ctype.ConsoleVNC(host=CONF.vnc.server_proxyclient_address,
                            port=int(port))
