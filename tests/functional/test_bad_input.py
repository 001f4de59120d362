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

"""Bad input and broken hosts: a clear error, and nothing left behind."""

import errno
import os
import subprocess

import fixtures
from nova.tests import fixtures as nova_fixtures

from nova_kvmx import exception
from tests.functional import base
from tests.functional import libvirt_proxy


class StartupErrorTest(base.RealLibvirtTestCase):
    """nova-compute refuses to start on a host it cannot serve."""

    START_COMPUTE = False

    def test_libvirtd_unreachable(self):
        uri = 'qemu+unix:///system?socket=/nonexistent/libvirt-sock'
        self.flags(connection_uri=uri, group='kvmx')
        ex = self.assertRaises(exception.LibvirtUnreachable,
                               self.start_compute)
        self.assertIn(uri, str(ex))

    def test_virt_type_not_offered(self):
        # libvirt's test driver offers only its own 'test' domain type, as
        # a host without /dev/kvm offers no 'kvm'.
        self.flags(connection_uri='test:///default', group='kvmx')
        ex = self.assertRaises(exception.HostNotSupported,
                               self.start_compute)
        self.assertIn('virt_type=qemu is not offered', str(ex))
        self.assertIn('it offers: test', str(ex))


class BuildErrorTest(base.RealLibvirtTestCase):
    """A build that cannot succeed ends in ERROR with a fault naming the
    cause, and leaves no domain, disk or instance directory."""

    def setUp(self):
        super().setUp()
        self.flavor_id = self.create_flavor()

    def upload_bytes(self, data, disk_format, **properties):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'img')
        with open(path, 'wb') as f:
            f.write(data)
        return self._upload(path, disk_format, 'bad-image', **properties)

    def test_image_is_not_a_disk_image(self):
        image_id = self.upload_bytes(b'#!/bin/sh\necho not a disk\n' * 100,
                                     'qcow2')
        fault = self.boot_and_expect_error(image_id, self.flavor_id)
        self.assertIn(image_id, fault)
        self.assertIn('unacceptable', fault)

    def test_qcow2_with_backing_file_is_refused(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tmp, 'evil.qcow2')
        subprocess.run(['qemu-img', 'create', '-f', 'qcow2', '-F', 'raw',
                        '-b', '/etc/hostname', '-u', path, '16M'],
                       check=True, capture_output=True, timeout=30)
        image_id = self._upload(path, 'qcow2', 'evil')
        fault = self.boot_and_expect_error(image_id, self.flavor_id)
        self.assertIn(image_id, fault)
        self.assertIn('unacceptable', fault)

    def test_glance_download_fails(self):
        image_id = self.create_bootable_image()

        def broken_download(context, image_id, data=None, dst_path=None,
                            **kwargs):
            with open(dst_path, 'wb') as f:
                f.write(b'\0' * 4096)  # part of it arrived
            raise ConnectionResetError(errno.ECONNRESET,
                                       'Connection reset by peer')

        self.useFixture(fixtures.MockPatchObject(
            self.glance, 'download', side_effect=broken_download))
        fault = self.boot_and_expect_error(image_id, self.flavor_id)
        self.assertIn('Could not fetch image', fault)
        self.assertIn('Connection reset by peer', fault)

    def test_domain_fails_to_start(self):
        guest = base.guest_image.get_guest_artifacts()
        image_id = self._upload(guest.root_disk, 'qcow2', 'bad-machine',
                                hw_machine_type='kvmx-no-such-machine')
        fault = self.boot_and_expect_error(image_id, self.flavor_id)
        # libvirt's own reason follows (its wording varies by version).
        self.assertRegex(fault, 'Guest kvmxtest-[0-9a-f]+-[0-9a-f]+ did not '
                                'start: .+')

    def test_ovs_port_that_cannot_be_plugged(self):
        # An OVS port goes to os-vif's OVS plugin, which cannot do its work
        # here (no OVS, no privsep helper for it): the build fails naming
        # the port, before any domain exists.
        image_id = self.create_bootable_image()
        fault = self.boot_and_expect_error(
            image_id, self.flavor_id,
            networks=[{'port': nova_fixtures.NeutronFixture.port_1['id']}])
        self.assertIn('Could not plug port %s' %
                      nova_fixtures.NeutronFixture.port_1['id'], fault)


class LibvirtLostTest(base.RealLibvirtTestCase):
    """libvirtd goes away under a running nova-compute."""

    START_COMPUTE = False

    def test_build_while_libvirtd_is_unreachable(self):
        proxy = self.useFixture(libvirt_proxy.LibvirtSocketProxy())
        self.flags(connection_uri=proxy.uri, group='kvmx')
        self.start_compute()
        image_id = self.create_bootable_image()
        flavor_id = self.create_flavor()
        # libvirtd goes away as the build reaches the host (a host known
        # to have lost it is disabled and gets no builds).
        spawn = self.driver.spawn

        def cut_then_spawn(*args, **kwargs):
            proxy.cut()
            return spawn(*args, **kwargs)

        self.useFixture(fixtures.MockPatchObject(
            self.driver, 'spawn', side_effect=cut_then_spawn))

        server = self._create_server(image_uuid=image_id,
                                     flavor_id=flavor_id, networks='none',
                                     expected_state='BUILD')
        server = self.wait_for_status(server, 'ERROR')
        self.assertIn('Cannot connect to libvirt at ' + proxy.uri,
                      server['fault']['message'])
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        # The real libvirtd never saw the guest.
        self.assertFalse(self.domain_exists(server))
