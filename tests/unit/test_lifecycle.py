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

"""Which libvirt domains the driver counts as Nova instances."""

import testtools

from nova_kvmx import lifecycle


class NamePatternTest(testtools.TestCase):
    """Only domains named by ``instance_name_template`` are instances:
    nova-compute refuses to start on a host whose "instances" it does not
    know, and an operator's own VMs must not count as such."""

    CASES = (
        ('instance-%08x', 'instance-0000002a', True),
        ('instance-%08x', 'instance-0000002a-clone', False),
        ('instance-%08x', 'my-router-vm', False),
        ('instance-%x', 'instance-2a', True),
        ('%(uuid)s', '7d4a2e4c-6a68-4b4e-8a0e-0a4d3e0d3b1a', True),
        ('vm.%(id)d', 'vm.42', True),
        ('vm.%(id)d', 'vmX42', False),  # the dot is literal
        ('test-ab12-%08x', 'test-ff00-00000001', False),
    )

    def test_name_pattern(self):
        for template, name, matches in self.CASES:
            self.assertEqual(
                matches,
                bool(lifecycle.name_pattern(template).fullmatch(name)),
                '%s vs %s' % (template, name))
