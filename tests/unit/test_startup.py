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

"""nova-compute's start refuses CPU sets its instances no longer fit."""

import fixtures
from nova import exception
import nova.conf
from nova import objects
from nova.objects import fields
from nova import test

from nova_kvmx import startup

objects.register_all()


def instance(policy=None, pinning=None, deleted=False):
    numa = None
    if policy is not None:
        cell = objects.InstanceNUMACell(
            id=0, cpuset=set(), pcpuset=set(pinning or {}), memory=512,
            cpu_policy=policy, cpu_pinning=pinning or {})
        numa = objects.InstanceNUMATopology(cells=[cell])
    return objects.Instance(uuid='5b0a4c4e-2d4b-4f57-9e5c-7fb1a0b7e0a1',
                            numa_topology=numa, deleted=deleted)


DEDICATED = fields.CPUAllocationPolicy.DEDICATED
MIXED = fields.CPUAllocationPolicy.MIXED


class CheckPinningTest(test.NoDBTestCase):

    def check(self, *instances):
        startup.check_pinning(nova.conf.CONF, instances)

    def refused(self, option, *instances):
        ex = self.assertRaises(exception.InvalidConfiguration,
                               self.check, *instances)
        self.assertIn("'[compute] %s'" % option, str(ex))

    def test_unpinned_instance_needs_shared_set(self):
        self.flags(cpu_dedicated_set='0-1', cpu_shared_set=None,
                   group='compute')
        self.refused('cpu_shared_set', instance())
        self.refused('cpu_shared_set', instance(
            fields.CPUAllocationPolicy.SHARED))

    def test_pinned_instance_needs_dedicated_set(self):
        self.flags(cpu_dedicated_set=None, cpu_shared_set='0-1',
                   group='compute')
        self.refused('cpu_dedicated_set', instance(DEDICATED, {0: 1}))

    def test_mixed_instance_needs_both(self):
        self.flags(cpu_dedicated_set='1', cpu_shared_set=None,
                   group='compute')
        # Unpinned instances are not here: the dedicated set alone is
        # refused for the mixed one.
        self.refused('cpu_shared_set', instance(MIXED, {0: 1}))

    def test_deleted_instance_ignored(self):
        self.flags(cpu_dedicated_set='0-1', cpu_shared_set=None,
                   group='compute')
        self.check(instance(deleted=True))

    def test_fitting_sets_pass(self):
        self.flags(cpu_dedicated_set='1', cpu_shared_set='0',
                   group='compute')
        self.check(instance(), instance(DEDICATED, {0: 1}),
                   instance(MIXED, {0: 1}))

    def test_pinned_outside_dedicated_set_warned(self):
        self.flags(cpu_dedicated_set='1', cpu_shared_set='0',
                   group='compute')
        log = self.useFixture(fixtures.FakeLogger())
        self.check(instance(DEDICATED, {0: 1, 1: 3}))
        self.assertIn('pinned to host CPUs [1, 3]', log.output)
        self.assertIn('missing: [3]', log.output)
