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

"""The host's PCI devices as libvirt's node devices describe them.

The I/O half of the PCI report: list the ``pci`` and ``net`` node devices
and hand their XML to :mod:`nova_kvmx.host.pci`. The facts Nova reads from
a function's network interface in sysfs (features, name, MAC) come from
the ``net`` node device whose parent is that function.
"""

import re

from lxml import etree

from nova_kvmx.host import pci

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None

_PCI_NODEDEV = re.compile(
    r'pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$')


def net_facts(xml_string):
    """(PCI address, features, interface name, MAC) of a ``net`` node
    device, or None when its parent is not a PCI function."""
    doc = etree.fromstring(xml_string)
    match = _PCI_NODEDEV.match(doc.findtext('parent') or '')
    cap = doc.find("capability[@type='net']")
    if match is None or cap is None:
        return None
    address = '%s:%s:%s.%s' % match.groups()
    features = [f.get('name') for f in cap.findall('feature')]
    return address, features, cap.findtext('interface'), \
        cap.findtext('address')


def pci_devices(conn):
    """The ``pci_passthrough_devices`` list of dicts for Nova."""
    pci_xml = [dev.XMLDesc(0) for dev in conn.listAllDevices(
        libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)]
    features, ifnames, macs = {}, {}, {}
    for dev in conn.listAllDevices(
            libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET):
        facts = net_facts(dev.XMLDesc(0))
        if facts is not None:
            address, features[address], ifnames[address], macs[address] = \
                facts
    return pci.devices_from_xml(pci_xml, features, ifnames, macs)
