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

"""Flavor CPU shares and quota (``quota:cpu_*``) -> ``<cputune>``.

Each flavor here passes Nova's own extra spec validators (what the API
lets an operator set); each domain passes libvirt's schema before its
``<cputune>`` is read back.
"""

import ddt
from nova.api.validation.extra_specs import validators
from nova import exception as nova_exception
import testtools

from nova_kvmx import exception
from tests.unit import builders as b
from tests.unit import nfv
from tests.unit import xml_schema


def quota_flavor(vcpus=2, **specs):
    """A flavor with ``quota:cpu_<name>`` for each ``name=value``, and
    ``hw:<name>`` for each ``hw_<name>``."""
    extra = {}
    for name, value in specs.items():
        key = (name.replace('hw_', 'hw:', 1) if name.startswith('hw_')
               else 'quota:cpu_' + name)
        validators.validate(key, str(value))
        extra[key] = str(value)
    return b.flavor(vcpus=vcpus, memory_mb=1024, extra_specs=extra)


@ddt.ddt
class CPUQuotaTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.host = self.useFixture(nfv.NFVHost())

    def cputune(self, flavor, settings=None):
        """The domain's <cputune> values {tag: text}, and the domain."""
        claim = self.host.claim(flavor, b.image())
        xml = b.render_xml(
            inst=b.instance(flavor_obj=flavor, numa_topology=claim),
            driver_settings=settings or self.host.settings)
        xml_schema.assert_valid_domain(self, xml)
        root = xml_schema.parse(xml)
        return {child.tag: child.text for child in root.iterfind(
            'cputune/*') if child.tag in ('shares', 'period', 'quota')}, root

    @ddt.data(
        (dict(shares=2048), {'shares': '2048'}),
        (dict(period=100000, quota=50000),
         {'period': '100000', 'quota': '50000'}),
        (dict(shares=0, period=1000, quota=2 ** 44 - 1),
         {'shares': '0', 'period': '1000', 'quota': str(2 ** 44 - 1)}),
        # Nova documents a period of 0 as "no value", a negative quota as
        # "no limit" (libvirt's -1); libvirt takes a quota of 0 as unset.
        (dict(period=0, quota=-5), {'quota': '-1'}),
        (dict(shares=512, quota=0), {'shares': '512'}),
    )
    @ddt.unpack
    def test_guest_without_numa_claim(self, specs, expected):
        values, root = self.cputune(quota_flavor(**specs))
        self.assertEqual(expected, values)
        # The quota alone: no pinning for a guest Nova did not pin.
        self.assertEqual(sorted(expected), sorted(
            child.tag for child in xml_schema.find(root, 'cputune')))

    def test_pinned_guest_keeps_its_pinning(self):
        values, root = self.cputune(quota_flavor(
            vcpus=4, hw_cpu_policy='dedicated', shares=4096,
            period=200000, quota=100000))
        self.assertEqual({'shares': '4096', 'period': '200000',
                          'quota': '100000'}, values)
        self.assertEqual(4, len(xml_schema.findall(root, 'cputune/vcpupin')))
        self.assertEqual(1, len(xml_schema.findall(
            root, 'cputune/emulatorpin')))

    def test_only_a_period_of_zero_asks_for_nothing(self):
        values, root = self.cputune(quota_flavor(period=0))
        self.assertEqual({}, values)
        self.assertEqual([], xml_schema.findall(root, 'cputune'))

    @ddt.data(
        ('period', '999', 'libvirt takes 1000 to 1000000 microseconds'),
        ('period', '1000001', 'libvirt takes 1000 to 1000000'),
        ('quota', '999', 'libvirt takes 1000 to 17592186044415'),
        ('quota', str(2 ** 44), 'or a negative value for no limit'),
        ('shares', str(2 ** 32), 'libvirt takes 0 to 4294967295'),
    )
    @ddt.unpack
    def test_value_libvirt_refuses_is_a_typed_error(self, name, value,
                                                    reason):
        ex = self.assertRaises(exception.InvalidCPUQuota, self.cputune,
                               quota_flavor(**{name: value}))
        self.assertIn('quota:cpu_%s=%s cannot be applied' % (name, value),
                      str(ex))
        self.assertIn(reason, str(ex))

    def test_unvalidated_value_is_a_typed_error(self):
        # Older API microversions store extra specs unvalidated.
        flavor = b.flavor(extra_specs={'quota:cpu_shares': 'lots'})
        ex = self.assertRaises(exception.InvalidCPUQuota, self.cputune,
                               flavor)
        self.assertIn('quota:cpu_shares=lots cannot be applied: it is not '
                      'an integer', str(ex))

    def test_host_without_cgroup_cpu_controller_refuses_as_nova(self):
        settings = b.settings(host_cpus=self.host.settings.host_cpus,
                              cpu_control=False)
        self.assertRaises(nova_exception.UnsupportedHostCPUControlPolicy,
                          self.cputune, quota_flavor(shares=1024),
                          settings)
        # A flavor without quotas does not need the controller.
        values, root = self.cputune(quota_flavor(), settings)
        self.assertEqual({}, values)
