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

"""libvirt's device events, handed to whoever waits for them.

A live detach is finished when libvirt says so: QEMU asks the guest to let
the device go, the guest may take its time or refuse, and libvirt sends
``device-removed`` (or ``device-removal-failed``) when it is over. Nova's
Host turns those into ``DeviceRemovedEvent``/``DeviceRemovalFailedEvent``
and hands them to the driver's event handler, which delivers them here;
a detach registers for the device's alias *before* it asks, so an event
that comes at once is not missed (as Nova's AsyncDeviceEventsHandler).
"""

import threading


class Waiter(object):
    def __init__(self, instance_uuid, alias, event_types):
        self.instance_uuid = instance_uuid
        self.alias = alias
        self.event_types = tuple(event_types)
        self.done = threading.Event()
        self.result = None

    def matches(self, event):
        return (event.uuid == self.instance_uuid and
                event.dev == self.alias and
                isinstance(event, self.event_types))


class DeviceEvents(object):
    def __init__(self):
        self._lock = threading.Lock()
        self._waiters = set()

    def create_waiter(self, instance_uuid, alias, event_types):
        waiter = Waiter(instance_uuid, alias, event_types)
        with self._lock:
            self._waiters.add(waiter)
        return waiter

    def delete_waiter(self, waiter):
        with self._lock:
            self._waiters.discard(waiter)

    def wait(self, waiter, timeout):
        """The event ``waiter`` waits for, or None after ``timeout``
        seconds; the waiter is gone either way."""
        try:
            waiter.done.wait(timeout)
            return waiter.result
        finally:
            self.delete_waiter(waiter)

    def notify(self, event):
        """Deliver ``event`` to its waiters; whether there was one."""
        with self._lock:
            matched = [w for w in self._waiters if w.matches(event)]
            for waiter in matched:
                waiter.result = event
                waiter.done.set()
                self._waiters.discard(waiter)
        return bool(matched)
