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

"""Nova's fake libvirt connection, with node-device events.

Nova's fake libvirt (``nova.tests.fixtures.libvirt``) has node devices but
no node-device events. :class:`Connection` adds the registration calls with
libvirt's signatures and lets a test (or a benchmark) send an event the way
libvirt's event loop calls the callbacks. Real event delivery is tested on
libvirt itself (tests/functional/test_host_report.py).
"""

import fixtures
import libvirt
from nova.tests.fixtures import libvirt as fakelibvirt

LIFECYCLE = libvirt.VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE
UPDATE = libvirt.VIR_NODE_DEVICE_EVENT_ID_UPDATE
CREATED = libvirt.VIR_NODE_DEVICE_EVENT_CREATED
DELETED = libvirt.VIR_NODE_DEVICE_EVENT_DELETED


class Connection(fakelibvirt.Connection):

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nodedev_callbacks = {}
        self._next_callback_id = 0

    def nodeDeviceEventRegisterAny(self, dev, event_id, callback, opaque):
        self._next_callback_id += 1
        self.nodedev_callbacks[self._next_callback_id] = (
            event_id, callback, opaque)
        return self._next_callback_id

    def nodeDeviceEventDeregisterAny(self, callback_id):
        if self.nodedev_callbacks.pop(callback_id, None) is None:
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError,
                'callback %s was not registered' % callback_id,
                error_code=fakelibvirt.VIR_ERR_INVALID_ARG)

    def _send(self, wanted, name, *args):
        # libvirt hands the callback a device object; a deleted device can
        # no longer be looked up, so it is made from the name alone.
        dev = fakelibvirt.NodeDevice(self, xml=(
            '<device><name>%s</name><parent>computer</parent></device>' %
            name))
        for event_id, callback, opaque in list(
                self.nodedev_callbacks.values()):
            if event_id == wanted:
                callback(self, dev, *args, opaque)

    def send_lifecycle(self, name, event):
        self._send(LIFECYCLE, name, event, 0)

    def send_update(self, name):
        self._send(UPDATE, name)


class Fixture(fixtures.Fixture):
    """Point nova_kvmx.host.devices at Nova's fake libvirt (its errors are
    the fake's), with libvirt's node-device event constants, which the
    fake lacks."""

    def _setUp(self):
        for name in ('VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE',
                     'VIR_NODE_DEVICE_EVENT_ID_UPDATE'):
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.' + name,
                getattr(libvirt, name)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_kvmx.host.devices.libvirt', fakelibvirt))
