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

"""Guests with an emulated TPM on the real libvirtd: swtpm (Debian's
``swtpm`` and ``swtpm-tools``) runs beside QEMU, its state encrypted with
the instance's secret from the key manager (Nova's own functional tests'
fake key manager stands in for Barbican); the state stays over a hard
reboot and goes with the server."""

import os
import time

import fixtures
from lxml import etree
from nova import context as nova_context
from nova import crypto
from nova import objects
import os_traits as ot

from tests.functional import base
from tests.functional import guest_image
from tests.functional import unprivileged

SWTPM_STATE = '/var/lib/libvirt/swtpm'
MARK = 'user.kvmx-test-swtpm'


class VTPMGuestTest(base.RealLibvirtTestCase):

    START_COMPUTE = False

    def setUp(self):
        super().setUp()
        self.flags(swtpm_enabled=True, swtpm_user='tss', swtpm_group='tss',
                   group='libvirt')
        self.flags(
            backend='nova.tests.functional.libvirt.test_vtpm.FakeKeyManager',
            group='key_manager')
        self.useFixture(fixtures.MonkeyPatch('nova.crypto._KEYMGR', None))
        # As Nova's vTPM tests: the service user has a context of its own.
        self.useFixture(fixtures.MockPatch(
            'nova.context.get_nova_service_user_context',
            lambda: nova_context.RequestContext(user_id='nova')))
        self.start_compute()

    def test_tpm_guest_keeps_its_state_over_hard_reboot(self):
        self.assertLessEqual({ot.COMPUTE_SECURITY_TPM_2_0,
                              ot.COMPUTE_SECURITY_TPM_1_2,
                              ot.COMPUTE_SECURITY_TPM_TIS,
                              ot.COMPUTE_SECURITY_TPM_CRB,
                              ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_USER},
                             self.traits())
        flavor_id = self.create_flavor(name='kvmx.tpm', extra_specs={
            'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb'})
        server = self._create_server(
            image_uuid=self.create_bootable_image(), flavor_id=flavor_id,
            networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)

        secret_uuid = objects.Instance.get_by_uuid(
            self.ctxt, server['id']).system_metadata['vtpm_secret_uuid']
        tpm = etree.fromstring(self.domain(server).XMLDesc(0)).find(
            './devices/tpm')
        self.assertEqual('tpm-crb', tpm.get('model'))
        backend = tpm.find('backend')
        self.assertEqual(('emulator', '2.0'),
                         (backend.get('type'), backend.get('version')))
        self.assertEqual(secret_uuid,
                         backend.find('encryption').get('secret'))
        # 'user' secret security: libvirt held the passphrase only while
        # the guest started.
        self.assertNotIn(secret_uuid, self.libvirt().listSecrets())
        state = os.path.join(SWTPM_STATE, server['id'])
        self.assertTrue(os.path.isdir(state), state)
        # swtpm's directory, root's: marked and read as root.
        unprivileged.as_root(os.setxattr, state, MARK, b'1')

        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)
        # The same state directory, not one made afresh.
        self.assertEqual(b'1', unprivileged.as_root(os.getxattr, state,
                                                    MARK))
        self.assertNotIn(secret_uuid, self.libvirt().listSecrets())

        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(state))
        # Nova's compute manager deleted the key manager's secret.
        self.assertNotIn(secret_uuid,
                         crypto._get_key_manager()._passphrases)

    def finished_events(self, server, request_id):
        """The events of an instance action once each has its result
        (the failing step's is recorded after the migration's status)."""
        path = '/servers/%s/os-instance-actions/%s' % (server['id'],
                                                       request_id)
        deadline = time.monotonic() + base.STATE_TIMEOUT
        while True:
            events = self.api.api_get(path).body['instanceAction']['events']
            if all(e['result'] for e in events):
                return events
            if time.monotonic() > deadline:
                self.fail('events still running: %s' % events)
            time.sleep(0.5)

    def test_resize_is_refused_and_the_guest_stays(self):
        """The swtpm state does not move yet: a resize (here, to this
        host) is refused before the guest is touched."""
        self.flags(allow_resize_to_same_host=True)
        specs = {'hw:tpm_version': '2.0'}
        flavor_id = self.create_flavor(name='kvmx.tpm', extra_specs=specs)
        bigger = self.create_flavor(name='kvmx.tpm2', ram=320,
                                    extra_specs=specs)
        server = self._create_server(
            image_uuid=self.create_bootable_image(), flavor_id=flavor_id,
            networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': bigger}})
        migration = self._wait_for_migration_status(server, ['error'])
        self.assertEqual('resize', migration['migration_type'])
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertTrue(self.domain(server).isActive())
        # What an admin reads of the failed resize (the server keeps no
        # fault: Nova rolled the resize back).
        resize = [a for a in self.api.get_instance_actions(server['id'])
                  if a['action'] == 'resize'][0]
        events = self.finished_events(server, resize['request_id'])
        self.assertIn('Error', [e['result'] for e in events])
        self.assertIn('emulated TPM', ' '.join(
            e.get('details') or '' for e in events))
        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
