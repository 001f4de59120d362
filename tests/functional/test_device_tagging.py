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

"""Device role tags and trusted image certificates, through Nova's API,
on real guests.

The guest's ports are Nova's NeutronFixture ports bound as OVS hybrid-plug
ports, plugged by test_vif_events' stand-in for os-vif's OVS plugin (this
machine has no Open vSwitch). What a user checks: the device metadata
Nova stores, what the guest reads from its config drive and from Nova's
metadata service, against the addresses in the domain libvirt holds.
"""

import copy
import json
import os
import subprocess
import time

from lxml import etree
from nova.api.metadata import base as instance_metadata
from nova import objects
from nova.tests import fixtures as nova_fixtures
from oslo_utils import uuidutils

from tests.functional import base
from tests.functional import guest_image
from tests.functional import test_vif_events
from tests.functional import unprivileged

# The cached test image's cert ids are any: the image is not signed.
CERT_ID = '0b5d2c72-12cc-4ba6-a8d7-3ff5cc1d8cb8'


def guest_pci_address(element):
    """'0000:02:00.0' from libvirt's <address type='pci'
    domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>."""
    addr = element.find("./address[@type='pci']").attrib
    return '{}:{}:{}.{}'.format(*(addr[name].removeprefix('0x') for name in
                                  ('domain', 'bus', 'slot', 'function')))


class DeviceTaggingTest(base.RealLibvirtTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(test_vif_events.OVSHybridPlugStandIn())
        self.image_id = self.create_bootable_image()
        self.flavor_id = self.create_flavor()

    def new_port(self, mac):
        port = copy.deepcopy(nova_fixtures.NeutronFixture.port_1)
        port.update({
            'id': uuidutils.generate_uuid(), 'mac_address': mac,
            'binding:vif_details': {'ovs_hybrid_plug': True,
                                    'port_filter': True}})
        self.neutron._ports[port['id']] = port
        return port

    def nic_address(self, server, mac):
        """The PCI address libvirt gave the guest's NIC of ``mac``."""
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        [nic] = [n for n in xml.findall('./devices/interface')
                 if n.find('mac').get('address') == mac]
        return guest_pci_address(nic)

    def stored(self, server):
        """The device metadata Nova's database holds, as a guest reads it
        from Nova's metadata service (openstack/latest/meta_data.json)."""
        instance = objects.Instance.get_by_uuid(
            self.ctxt, server['id'], expected_attrs=['device_metadata'])
        served = json.loads(instance_metadata.get_metadata_by_instance_id(
            server['id'], None, self.ctxt).lookup(
                '/openstack/latest/meta_data.json'))
        return instance.device_metadata, served.get('devices')

    def config_drive_devices(self, server, name='disk.config'):
        path = os.path.join(self.instance_dir(server), name)
        # QEMU's while the guest runs: read as root.
        return json.loads(unprivileged.as_root(
            subprocess.run, ['isoinfo', '-i', path, '-R', '-x',
                             '/openstack/latest/meta_data.json'],
            check=True, capture_output=True, timeout=60).stdout)['devices']

    def wait_for_served(self, server, devices, timeout=base.STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.stored(server)[1] != devices:
            if time.monotonic() > deadline:
                self.fail('devices of %s after %ds: %s, expected %s' % (
                    server['id'], timeout, self.stored(server)[1], devices))
            time.sleep(0.5)

    @staticmethod
    def nic(mac, address, tags):
        return {'type': 'nic', 'bus': 'pci', 'address': address,
                'mac': mac, 'tags': tags, 'vf_trusted': False}

    def test_tagged_port_at_boot_and_attached(self):
        mgmt = self.new_port('fa:16:3e:7a:91:01')
        server = self._build_server(
            image_uuid=self.image_id, flavor_id=self.flavor_id,
            networks=[{'port': mgmt['id'], 'tag': 'nfv-mgmt'}])
        server['config_drive'] = True
        server = self.wait_for_status(self.api.post_server(
            {'server': server}), 'ACTIVE')

        booted = [self.nic(mgmt['mac_address'], self.nic_address(
            server, mgmt['mac_address']), ['nfv-mgmt'])]
        meta, served = self.stored(server)
        [device] = meta.devices
        self.assertEqual((mgmt['mac_address'], ['nfv-mgmt']),
                         (device.mac, device.tags))
        self.assertEqual(booted, served)
        # The config drive was made once libvirt had given the NIC its
        # address.
        self.assertEqual(booted, self.config_drive_devices(server))

        # A booted guest, which answers the unplug request of a detach.
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        data = self.new_port('fa:16:3e:7a:91:02')
        self.api.attach_interface(server['id'], {'interfaceAttachment': {
            'port_id': data['id'], 'tag': 'nfv-data'}})
        attached = booted + [self.nic(data['mac_address'], self.nic_address(
            server, data['mac_address']), ['nfv-data'])]
        self.assertEqual(attached, self.stored(server)[1])
        # Two NICs at two addresses.
        self.assertNotEqual(attached[0]['address'], attached[1]['address'])

        # (A cast: the API answers before the port is detached.)
        self.api.detach_interface(server['id'], data['id'])
        self.wait_for_served(server, booted)

        self._delete_server(server)


class DeviceTaggingMovesTest(DeviceTaggingTest):
    """The device metadata Nova serves is the domain's after a rescue, an
    unrescue, a resize (which adds an ephemeral disk) and its revert, and
    the rescue config drive carries it. (libvirt gives the NIC the same
    address in each of these domains: the tagged volumes whose addresses
    do move are Cinder volumes, which this tier attaches only from its
    Ceph cluster, KVMX_CEPH=1.)"""

    # DeviceTaggingTest's own test runs there only.
    test_tagged_port_at_boot_and_attached = None

    def tagged_server(self):
        port = self.new_port('fa:16:3e:7a:92:01')
        server = self._build_server(
            image_uuid=self.image_id, flavor_id=self.flavor_id,
            networks=[{'port': port['id'], 'tag': 'nfv-mgmt'}])
        server['config_drive'] = True
        server = self.wait_for_status(self.api.post_server(
            {'server': server}), 'ACTIVE')
        self.addCleanup(self._delete_server, server)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        return server, port['mac_address']

    def served_is_the_domains(self, server, mac):
        """The NIC of the domain libvirt holds, as Nova serves it; its
        address."""
        address = self.nic_address(server, mac)
        self.assertEqual([self.nic(mac, address, ['nfv-mgmt'])],
                         self.stored(server)[1])
        return address

    def test_rescue_and_unrescue(self):
        server, mac = self.tagged_server()
        own = self.served_is_the_domains(server, mac)

        self.api.post_server_action(server['id'], {'rescue': {}})
        server = self.wait_for_status(server, 'RESCUE')
        self.served_is_the_domains(server, mac)
        # The rescue config drive was made from the rescue domain.
        self.assertEqual(self.stored(server)[1], self.config_drive_devices(
            server, 'disk.config.rescue'))

        self.api.post_server_action(server['id'], {'unrescue': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(own, self.served_is_the_domains(server, mac))

    def test_resize_with_an_ephemeral_disk(self):
        self.flags(allow_resize_to_same_host=True)
        server, mac = self.tagged_server()
        own = self.served_is_the_domains(server, mac)
        bigger = self._create_flavor(name='kvmx.tiny.eph', vcpu=1,
                                     memory_mb=256, disk=1, ephemeral=1)
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': bigger}})
        server = self.wait_for_status(server, 'VERIFY_RESIZE')
        # The new domain has the flavor's ephemeral disk.
        self.assertEqual(['disk.eph0'], [
            os.path.basename(path) for path in etree.fromstring(
                self.domain(server).XMLDesc(0)).xpath(
                    "devices/disk[target/@dev='vdb']/source/@file")])
        self.served_is_the_domains(server, mac)

        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(own, self.served_is_the_domains(server, mac))


class TrustedCertsTest(base.RealLibvirtTestCase):

    def test_unsigned_image_with_trusted_certs(self):
        """Nova's Glance client refuses the image before downloading it:
        the server's trusted certificates ask for a signed image (the
        build would fail on a host not supporting them, with Nova's own
        message)."""
        image_id = self.create_bootable_image()
        self.api.microversion = '2.63'
        server = self._build_server(image_uuid=image_id,
                                    flavor_id=self.create_flavor(),
                                    networks='none')
        server['trusted_image_certificates'] = [CERT_ID]
        server = self.api.post_server({'server': server})
        server = self.wait_for_status(server, 'ERROR')
        # (Nova keeps 255 characters of the message.)
        self.assertIn('Image %s failed its signature verification: '
                      'Signature verification for the image failed: '
                      'Required image properties for signature '
                      'verification do not exist' % image_id,
                      server['fault']['message'])
        self.assertEqual([CERT_ID], objects.Instance.get_by_uuid(
            self.ctxt, server['id'], expected_attrs=['trusted_certs']
        ).trusted_certs.ids)
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        cache = os.path.join(self.instances_path, '_base')
        self.assertEqual([], os.listdir(cache) if os.path.isdir(cache)
                         else [])
