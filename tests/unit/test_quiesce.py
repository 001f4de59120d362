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

"""Freezing and thawing a guest's filesystems, with Nova's rules.

The guest is libvirt's ``test:///default`` domain ``test``: libvirt's test
driver really keeps track of its two filesystems (``/`` and ``/boot``),
frozen or not, and answers fsFreeze/fsThaw with how many changed -- so a
second freeze answers 0 while they are frozen; a shut-off domain makes
libvirt fail them. A real agent, also one
that does not answer, is in tests/functional/test_snapshot.py.
"""

import logging

import ddt
import fixtures
import libvirt
from nova import exception
from nova.virt.libvirt import guest as libvirt_guest
import testtools

from nova_kvmx import quiesce
from tests.unit import builders as b

AGENT = {'hw_qemu_guest_agent': 'yes'}
REQUIRED = {'os_require_quiesce': 'yes'}


@ddt.ddt
class QuiesceTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        libvirt.registerErrorHandler(lambda ctxt, err: None, None)
        self.addCleanup(libvirt.registerErrorHandler, None, None)
        conn = libvirt.open('test:///default')
        self.addCleanup(conn.close)
        self.domain = conn.lookupByName('test')
        # The test driver's default state lives as long as the process:
        # leave the domain running and thawed for the next test.
        self.addCleanup(self.restore)
        self.guest = libvirt_guest.Guest(self.domain)
        self.instance = b.instance()

    def restore(self):
        if not self.domain.isActive():
            self.domain.create()
        self.domain.fsThaw()

    def frozen_now(self):
        """Whether the filesystems are frozen: a freeze then changes none
        (and, if it froze them, they are thawed again)."""
        if self.domain.fsFreeze() == 0:
            return True
        self.domain.fsThaw()
        return False

    def test_freeze_and_thaw_log_how_many_filesystems(self):
        self.assertEqual(2, quiesce.freeze(self.guest, self.instance))
        self.assertTrue(self.frozen_now())
        self.assertEqual(2, quiesce.thaw(self.guest, self.instance))
        self.assertFalse(self.frozen_now())
        self.assertIn('Froze 2 filesystem(s) of the guest', self.log.output)
        self.assertIn('Thawed 2 filesystem(s) of the guest', self.log.output)

    def test_libvirt_error_is_an_internal_error(self):
        """As Nova's libvirt driver: InternalError, with libvirt's code and
        message, for any libvirt error but an unresponsive agent."""
        self.domain.destroy()
        ex = self.assertRaises(exception.InternalError, quiesce.freeze,
                               self.guest, self.instance)
        self.assertIn("libvirt failed freezing the guest's filesystems: "
                      "[Error Code %d]" % libvirt.VIR_ERR_OPERATION_INVALID,
                      str(ex))
        self.assertIn('domain is not running', str(ex))

    @ddt.data('yes', 'true')
    def test_agent_checked(self, value):
        quiesce.check_agent(b.image(hw_qemu_guest_agent=value))

    @ddt.data({}, {'hw_qemu_guest_agent': 'no'})
    def test_no_agent(self, props):
        self.assertRaises(exception.QemuGuestAgentNotEnabled,
                          quiesce.check_agent, b.image(**props))

    @ddt.data(({}, False), (AGENT, True), (dict(AGENT, **REQUIRED), True))
    @ddt.unpack
    def test_snapshot_freezes_with_the_agent(self, props, freeze):
        self.assertIs(freeze, quiesce.check_snapshot(self.instance,
                                                     b.image(**props)))

    def test_snapshot_requiring_quiesce_without_agent_is_refused(self):
        self.assertRaises(exception.QemuGuestAgentNotEnabled,
                          quiesce.check_snapshot, self.instance,
                          b.image(**REQUIRED))

    @ddt.data(AGENT, dict(AGENT, **REQUIRED))
    def test_frozen_for_the_cut_then_thawed(self, props):
        with quiesce.frozen_for_snapshot(self.guest, self.instance,
                                         b.image(**props)):
            self.assertTrue(self.frozen_now())
        self.assertFalse(self.frozen_now())

    def test_thawed_when_the_cut_fails(self):
        def cut():
            with quiesce.frozen_for_snapshot(self.guest, self.instance,
                                             b.image(**AGENT)):
                raise exception.NovaException('block job gone')
        self.assertRaises(exception.NovaException, cut)
        self.assertFalse(self.frozen_now())

    def test_failed_freeze_fails_a_snapshot_that_requires_it(self):
        self.domain.destroy()
        cuts = []

        def cut():
            with quiesce.frozen_for_snapshot(
                    self.guest, self.instance,
                    b.image(**dict(AGENT, **REQUIRED))):
                cuts.append('cut')
        ex = self.assertRaises(exception.InternalError, cut)
        self.assertIn('freezing', str(ex))
        self.assertEqual([], cuts)

    def test_failed_freeze_snapshots_unquiesced_otherwise(self):
        self.domain.destroy()
        cuts = []
        with quiesce.frozen_for_snapshot(self.guest, self.instance,
                                         b.image(**AGENT)):
            cuts.append('cut')
        self.assertEqual(['cut'], cuts)
        self.assertIn('Could not quiesce the guest, snapshotting it '
                      'unquiesced', self.log.output)
