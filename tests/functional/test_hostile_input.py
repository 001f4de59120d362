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

"""Tenants' strings and tenants' data on a real compute node.

Every string a tenant (or an image owner, or a port's binding) controls
reaches the domain only through the XML library, exactly and escaped, or
is refused with a clear error; none of them chooses a file (instance
directories are named by uuid). A guest's disks, config drive and console
log are readable by root and, while it runs, QEMU only: not by other
local users.
"""

import copy
import grp
import os
import stat
import subprocess

from lxml import etree
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.api import client
from oslo_utils import uuidutils

from tests.functional import base
from tests.functional import guest_image
from tests.functional import leftovers

NOVA_NS = {'nova': 'http://openstack.org/xmlns/libvirt/nova/1.1'}
# Markup, quotes, an entity, a path out of the instance directory, and
# characters beyond ASCII (Nova's API allows no astral ones in names).
HOSTILE = ('"\'><devices><disk/></devices>&amp; ../../../etc/shadow '
           '\u00e9\u4e2d\u6587')
# What JSON can carry but XML cannot: NUL, a control character, a lone
# surrogate (a non-UTF-8 byte decoded with surrogateescape).
CONTROL = ['a\x00b', 'a\x1bb']
NOT_UTF8 = 'a\udc80b'


def readable_by_nobody(path):
    """Whether an unprivileged local user can read ``path``."""
    return subprocess.run(
        ['runuser', '-u', 'nobody', '--', 'head', '-c', '1', path],
        capture_output=True, timeout=30).returncode == 0


class PrivateFilesTest(leftovers.LeftoversMixin, base.RealLibvirtTestCase):

    def test_files_of_a_running_guest_are_private(self):
        self.scenario('guest files readable by root and QEMU only',
                      kind='hostile')
        server = self.boot_with_every_disk()

        inst_dir = self.instance_dir(server)
        # Traversable (QEMU runs as another user), not listable.
        self.assertEqual(0o711, stat.S_IMODE(os.stat(inst_dir).st_mode))
        self.assertFalse(readable_by_nobody(inst_dir + '/.'))
        cache = os.path.join(self.instances_path, '_base')
        paths = [os.path.join(inst_dir, name) for name in (
            'disk', 'kernel', 'ramdisk', 'disk.eph0', 'disk.swap',
            'disk.config', 'console.log')]
        bases = [os.path.join(cache, name) for name in os.listdir(cache)
                 if name != 'locks']
        for path in paths:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            self.assertEqual(0, mode & 0o077, '%s is %o' % (path, mode))
            self.assertFalse(readable_by_nobody(path), path)
        # The bases are shared with QEMU's user through the image cache's
        # group ([kvmx] image_cache_group), read-only, and no one else's.
        kvm = grp.getgrnam('kvm').gr_gid
        for path in bases:
            info = os.stat(path)
            self.assertEqual((0o640, kvm), (stat.S_IMODE(info.st_mode),
                                            info.st_gid), path)
            self.assertFalse(readable_by_nobody(path), path)

        # QEMU reads them all: libvirt hands them to its user.
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        self.assertEqual(
            {'disk', 'disk.eph0', 'disk.swap', 'disk.config'},
            {os.path.basename(d.get('file'))
             for d in xml.findall('./devices/disk/source')})
        self.assertTrue(self.domain(server).isActive())
        self._delete_server(server)
        self.assert_nothing_left(server)


class HostileInputTest(leftovers.LeftoversMixin, base.RealLibvirtTestCase):
    """One test per way a tenant's string reaches the driver."""

    def setUp(self):
        super().setUp()
        self.flavor_id = self.create_flavor()
        self.artifacts = guest_image.get_guest_artifacts()

    def image(self, **properties):
        """A bootable image with ``properties`` (the command line is the
        guest's own unless given)."""
        properties.setdefault('os_command_line', self.artifacts.cmdline)
        if 'kernel_id' not in properties:
            properties['kernel_id'] = self._upload(self.artifacts.kernel,
                                                   'aki', 'k')
            properties['ramdisk_id'] = self._upload(
                self.artifacts.initramfs, 'ari', 'r')
        return self._upload(self.artifacts.root_disk, 'qcow2', 'hostile',
                            **properties)

    def boot(self, expected='ACTIVE', image_id=None, networks='none',
             **request):
        server = self._build_server(
            image_uuid=image_id or self.image(), flavor_id=self.flavor_id,
            networks=networks)
        server.update(request)
        return self.wait_for_status(self.api.post_server(
            {'server': server}), expected)

    def refused_by_api(self, status=400, **request):
        server = self._build_server(image_uuid=self.image(),
                                    flavor_id=self.flavor_id,
                                    networks='none')
        server.update(request)
        ex = self.assertRaises(client.OpenStackApiException,
                               self.api.post_server, {'server': server})
        self.assertEqual(status, ex.response.status_code)
        return ex.response.text

    def assert_non_utf8_image_property_refused(self, prop):
        """Nova's API fails (500) copying an image property with a lone
        surrogate into the instance's system metadata: it never reaches a
        host."""
        self.assertIn('UnicodeEncodeError', self.refused_by_api(
            500, imageRef=self.image(**{prop: NOT_UTF8})))

    def xml(self, server):
        return etree.fromstring(self.domain(server).XMLDesc(0))

    def assert_files_by_uuid_only(self, *servers):
        """Each server's directory is its UUID; the image cache and its
        locks are the host's."""
        self.assertEqual(
            sorted(['_base', 'locks'] + [s['id'] for s in servers]),
            sorted(os.listdir(self.instances_path)))

    def delete(self, server):
        self._delete_server(server)
        self.assert_nothing_left(server)

    def test_server_name(self):
        self.scenario('hostile server name', kind='hostile')
        name = (HOSTILE * 8)[:255].strip()
        server = self.boot(name=name)
        # Kept exactly, as text: no element of its own in the domain.
        xml = self.xml(server)
        self.assertEqual(name, xml.findtext('metadata/nova:instance/'
                                            'nova:name', namespaces=NOVA_NS))
        self.assertEqual([], xml.findall('.//devices/devices'))
        self.assertEqual(server['OS-EXT-SRV-ATTR:instance_name'],
                         xml.findtext('name'))
        self.assert_files_by_uuid_only(server)
        self.delete(server)
        # What XML cannot carry, and more than 255 characters, Nova's API
        # refuses.
        for bad in CONTROL + [NOT_UTF8, 'x' * 256]:
            self.assertRegex(self.refused_by_api(name=bad),
                             "invalid 'name'|Invalid input for field/"
                             "attribute name")

    def test_metadata(self):
        self.scenario('hostile server metadata', kind='hostile')
        metadata = {'key %d' % i: value for i, value in enumerate(
            [HOSTILE[:255], '../' * 85, 'x' * 255, 'a\x00b'])}
        server = self.boot(metadata=metadata, config_drive=True)
        self.assertEqual(metadata, self.api.get_server(server['id'])[
            'metadata'])
        # Metadata goes to the config drive (JSON), not into the domain.
        text = self.domain(server).XMLDesc(0)
        self.assertNotIn('shadow', text)
        self.assertNotIn('../', text)
        self.assert_files_by_uuid_only(server)
        self.delete(server)

    def test_kernel_command_line(self):
        self.scenario('hostile os_command_line', kind='hostile')
        cmdline = '%s kvmx.x=%s %s' % (self.artifacts.cmdline, HOSTILE,
                                       'y' * 1000)
        server = self.boot(image_id=self.image(os_command_line=cmdline))
        self.assertEqual(cmdline, self.xml(server).findtext('os/cmdline'))
        # QEMU got it as one argument, unchanged.
        with open('/run/libvirt/qemu/%s.pid' %
                  server['OS-EXT-SRV-ATTR:instance_name']) as f:
            with open('/proc/%s/cmdline' % f.read().strip(), 'rb') as g:
                argv = g.read().decode().split('\0')
        self.assertEqual(cmdline, argv[argv.index('-append') + 1])
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        self.delete(server)

        for bad in CONTROL:
            image_id = self.image(os_command_line=bad)
            server = self.boot('ERROR', image_id=image_id)
            self.assertIn(
                'Image %s is unacceptable: its os_command_line has '
                'characters a libvirt domain cannot carry (NUL, control '
                'characters or invalid Unicode)' % image_id,
                server['fault']['message'])
            self.delete(server)
        self.assert_non_utf8_image_property_refused('os_command_line')

    def test_machine_type(self):
        self.scenario('hostile hw_machine_type', kind='hostile')
        for bad in [HOSTILE, '../../../usr/bin/qemu', ''] + CONTROL:
            image_id = self.image(hw_machine_type=bad)
            server = self.boot('ERROR', image_id=image_id)
            self.assertIn("is not compatible with image hostile (%s): a "
                          "machine type is letters, digits, '_', '.' and "
                          "'-' only" % image_id, server['fault']['message'])
            self.delete(server)
        self.assert_non_utf8_image_property_refused('hw_machine_type')

    def test_image_properties_nova_validates(self):
        self.scenario('hostile hw_* enum image properties', kind='hostile')
        for prop in ('hw_disk_bus', 'hw_vif_model', 'hw_cpu_policy',
                     'hw_mem_page_size', 'hw_numa_nodes'):
            self.refused_by_api(imageRef=self.image(**{prop: HOSTILE}))

    def port(self, **fields):
        port = copy.deepcopy(nova_fixtures.NeutronFixture.port_1)
        port.update(id=uuidutils.generate_uuid(), **fields)
        self.neutron._ports[port['id']] = port
        return port['id']

    def test_port_data(self):
        # A malformed MAC is not tried through the API: Neutron refuses
        # one, and Nova's own notifications fail on it whatever the driver
        # says (test_untrusted_strings covers the driver's answer).
        self.scenario('hostile port bridge and vhost-user socket',
                      kind='hostile')
        for fields, reason in (
                ({'binding:vif_details': {'bridge_name': '../../etc'}},
                 "bridge name '../../etc' is not a network device name"),
                ({'binding:vif_type': 'vhostuser', 'binding:vif_details': {
                    'vhostuser_socket': '/run/vhu/../../etc/shadow',
                    'vhostuser_mode': 'client',
                    'vhostuser_ovs_plug': True}},
                 "vhost-user socket '/run/vhu/../../etc/shadow' is not an "
                 "absolute, normalised path")):
            port_id = self.port(**fields)
            server = self.boot('ERROR', networks=[{'port': port_id}])
            self.assertIn('Port %s has an invalid binding: %s' % (
                port_id, reason), server['fault']['message'])
            self.delete(server)
