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

"""The facts about a host the operator commands reason on.

Either read from a live libvirt (what nova-compute would see) or from saved
files: ``virsh capabilities`` output and, optionally, a directory of
``virsh nodedev-dumpxml`` outputs (one device per ``*.xml`` file, PCI and
``net`` devices). Saved files are read with Nova's own
``LibvirtConfigCaps`` and our :mod:`nova_kvmx.host.pci`, exactly as the
driver reads what libvirt returns.
"""

import dataclasses
import glob
import os

import libvirt
from lxml import etree
from nova import exception
from nova.virt.libvirt import config as vconfig
from oslo_serialization import jsonutils

from nova_kvmx.host import connection
from nova_kvmx.host import devices
from nova_kvmx.host import pci
from nova_kvmx import safe_xml


class HostDumpUnreadable(exception.Invalid):
    msg_fmt = 'Cannot read %(path)s: %(reason)s'


class LibvirtUnreachable(exception.HypervisorUnavailable):
    msg_fmt = 'Cannot connect to libvirt at %(uri)s: %(reason)s'


@dataclasses.dataclass
class HostFacts:
    """What the driver learns from libvirt, whatever its source."""

    source: str
    caps: vconfig.LibvirtConfigCaps
    online_cpus: frozenset
    memory_mb: int
    pci_devices: list = dataclasses.field(default_factory=list)
    # [(domain XML, running)] of every defined domain, when read.
    domains: list = None
    # Nova's node name for the host (libvirt's hostname), when live.
    nodename: str = None


def _read_text(path):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as ex:
        raise HostDumpUnreadable(path=path, reason=ex.strerror or ex)


def _xml_error(ex):
    if isinstance(ex, safe_xml.DoctypeRefused):
        return str(ex)
    return 'not well-formed XML: %s' % ex


def parse_capabilities(text):
    """``LibvirtConfigCaps`` of libvirt's capabilities XML, read with our
    parser (Nova's ``parse_str`` takes lxml's default one)."""
    caps = vconfig.LibvirtConfigCaps()
    caps.parse_dom(safe_xml.fromstring(text))
    return caps


def read_capabilities(path):
    """``LibvirtConfigCaps`` of a saved ``virsh capabilities`` output."""
    try:
        caps = parse_capabilities(_read_text(path))
    except etree.XMLSyntaxError as ex:
        raise HostDumpUnreadable(path=path, reason=_xml_error(ex))
    except exception.InvalidInput as ex:
        raise HostDumpUnreadable(
            path=path, reason='%s: is it the output of "virsh '
                              'capabilities"?' % ex.format_message())
    except (TypeError, ValueError, AttributeError) as ex:
        raise HostDumpUnreadable(
            path=path, reason='not libvirt capabilities XML: %s' % ex)
    if caps.host is None or caps.host.cpu is None:
        raise HostDumpUnreadable(
            path=path, reason='no <host><cpu> element: is it the output of '
                              '"virsh capabilities"?')
    return caps


def _cells(caps):
    topology = caps.host.topology
    return topology.cells if topology is not None else []


def _online_cpus(caps):
    """The CPUs libvirt lists in the NUMA cells: capabilities do not say
    which are offline, so all of them (a host without cells: its CPU
    topology's count, numbered from 0)."""
    cpus = {cpu.id for cell in _cells(caps) for cpu in cell.cpus}
    if not cpus:
        cpu = caps.host.cpu
        cpus = set(range((cpu.sockets or 1) * (cpu.cores or 1) *
                         (cpu.threads or 1)))
    return frozenset(cpus)


def read_node_devices(directory):
    """Nova's PCI device dicts from a directory of node-device XML files.

    ``net`` devices, when present, give the functions' interface names,
    features and MACs, as the driver reads them from libvirt.
    """
    if not os.path.isdir(directory):
        raise HostDumpUnreadable(path=directory, reason='not a directory')
    pci_xml, features, ifnames, macs = [], {}, {}, {}
    for path in sorted(glob.glob(os.path.join(directory, '*.xml'))):
        text = _read_text(path)
        try:
            doc = safe_xml.fromstring(text)
        except etree.XMLSyntaxError as ex:
            raise HostDumpUnreadable(path=path, reason=_xml_error(ex))
        if doc.tag != 'device':
            raise HostDumpUnreadable(
                path=path, reason='root element is <%s>, not <device>: is it '
                                  'the output of "virsh nodedev-dumpxml"?'
                                  % doc.tag)
        if doc.find("capability[@type='pci']") is not None:
            pci_xml.append(text)
        elif doc.find("capability[@type='net']") is not None:
            facts = devices.net_facts(text)
            if facts is not None:
                address, features[address], ifnames[address], \
                    macs[address] = facts
    return pci.devices_from_xml(pci_xml, features, ifnames, macs)


def from_files(capabilities, nodedev_dir=None):
    caps = read_capabilities(capabilities)
    memory_kb = sum(cell.memory for cell in _cells(caps))
    return HostFacts(
        source=capabilities,
        caps=caps,
        online_cpus=_online_cpus(caps),
        memory_mb=memory_kb // 1024,
        pci_devices=read_node_devices(nodedev_dir) if nodedev_dir else [])


class QueryHost(connection.Host):
    """Nova's Host for one-shot, read-only queries: no lifecycle event
    callbacks (a command runs no libvirt event loop, and libvirt complains
    when asked for events without one), and a failed connection is an
    error naming the URI, without the notification nova-compute sends
    (which needs Nova's RPC set up)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pci_report = devices.PCIReport(events=False)

    def _get_new_connection(self):
        return self._connect(self._uri, self._read_only)

    def get_connection(self):
        try:
            return self._get_connection()
        except libvirt.libvirtError as ex:
            raise LibvirtUnreachable(uri=self._uri, reason=ex)


def open_host(uri):
    """A read-only connection (raises LibvirtUnreachable naming the URI);
    the caller closes it."""
    # libvirt prints every error on stderr unless a handler takes them; we
    # get them as exceptions anyway (as nova-compute does).
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    host = QueryHost(uri, read_only=True)
    host.get_connection()
    return host


def read_domains(conn):
    """[(XML, running)] of every defined domain, running or shut off
    (a domain undefined meanwhile is skipped)."""
    result = []
    for dom in conn.listAllDomains(0):
        try:
            result.append((dom.XMLDesc(0), bool(dom.isActive())))
        except libvirt.libvirtError as ex:
            if ex.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return result


def from_libvirt(uri, with_domains=False):
    """The host's facts; with its domains when ``with_domains``."""
    host = open_host(uri)
    try:
        return HostFacts(
            source=uri,
            caps=host.get_capabilities(),
            online_cpus=frozenset(host.get_online_cpus()),
            memory_mb=host.get_memory_mb_total(),
            pci_devices=jsonutils.loads(host.pci_devices_json()),
            domains=(read_domains(host.get_connection())
                     if with_domains else None),
            nodename=host.get_hostname())
    finally:
        host.close()
