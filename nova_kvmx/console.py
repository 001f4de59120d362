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

"""Consoles of a guest: the serial console log, the TCP ports of the
serial console, VNC and SPICE.

The serial console's ports are Nova's (``nova.console.serial``): acquired
when a domain is rendered, released when it is undefined, as Nova's
libvirt driver does.
"""

import os

import nova.conf
from nova.console import serial
from nova.console import type as ctype
from nova import exception
import nova.privsep.path
from oslo_utils import excutils

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
    port = _port(graphics.get('port')) if graphics is not None else None
    if port is None:
        # No VNC, or libvirt has not allocated its port yet (-1).
        raise exception.ConsoleTypeUnavailable(console_type='vnc')
    return ctype.ConsoleVNC(host=CONF.vnc.server_proxyclient_address,
                            port=port)


def spice_console(domain_xml):
    """The SPICE console of a running domain, from the ports libvirt
    chose (its TLS port None without TLS)."""
    doc = safe_xml.fromstring(domain_xml)
    graphics = doc.find("./devices/graphics[@type='spice']")
    if graphics is None:
        raise exception.ConsoleTypeUnavailable(console_type='spice')
    port, tls_port = (_port(graphics.get(name))
                      for name in ('port', 'tlsPort'))
    if port is None and tls_port is None:
        raise exception.ConsoleTypeUnavailable(console_type='spice')
    return ctype.ConsoleSpice(host=CONF.spice.server_proxyclient_address,
                              port=port, tlsPort=tls_port)


def _port(value):
    """A port libvirt allocated; None for none (absent, or -1 before the
    domain runs)."""
    return int(value) if value is not None and int(value) >= 0 else None


def serial_console(domain_xml):
    """The first TCP serial port the domain listens on (Nova's libvirt
    driver's choice: the one with the boot messages)."""
    for host, port in serial_ports(domain_xml, mode='bind'):
        return ctype.ConsoleSerial(host=host, port=port)
    raise exception.ConsoleTypeUnavailable(console_type='serial')


def serial_ports(domain_xml, mode=None):
    """[(host, port)] of the domain's TCP serial ports (or consoles, where
    a platform has only those), as Nova's libvirt driver finds them."""
    doc = safe_xml.fromstring(domain_xml)
    mode_filter = "[@mode='%s']" % mode if mode else ''
    sources = (doc.findall("./devices/serial[@type='tcp']/source" +
                           mode_filter) or
               doc.findall("./devices/console[@type='tcp']/source" +
                           mode_filter))
    return [(source.get('host'), int(source.get('service')))
            for source in sources]


def acquire_serial_ports(host, count):
    """``count`` free ports of ``[serial_console] port_range`` on
    ``host``, none kept if one cannot be had.

    :raises: Nova's SocketPortRangeExhaustedException
    """
    ports = []
    try:
        for _ in range(count):
            ports.append(serial.acquire_port(host))
    except Exception:
        with excutils.save_and_reraise_exception():
            release_serial_ports(host, ports)
    return tuple(ports)


def release_serial_ports(host, ports):
    for port in ports:
        serial.release_port(host=host, port=port)


def release_domain_serial_ports(domain_xml):
    """Give back the TCP serial ports of a domain that is gone (or was
    never created)."""
    for host, port in serial_ports(domain_xml):
        serial.release_port(host=host, port=port)
