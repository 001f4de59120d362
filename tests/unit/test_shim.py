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

"""How Nova finds the driver: the ``nova.virt.kvmx`` shim.

Nova loads ``'nova.virt.' + CONF.compute_driver`` with importutils; with
``compute_driver = kvmx.KVMXDriver`` that is the one-module shim this
project installs. These tests run against the installed shim (not the
source tree), so a packaging mistake shows up here.
"""

import importlib
import importlib.metadata
import inspect

from nova.virt import driver
from oslo_utils import importutils
import testtools

from nova_kvmx import driver as kvmx_driver


class ShimTest(testtools.TestCase):
    def test_shim_exports_our_compute_driver(self):
        shim = importlib.import_module('nova.virt.kvmx')
        self.assertIs(kvmx_driver.KVMXDriver, shim.KVMXDriver)
        self.assertTrue(issubclass(shim.KVMXDriver, driver.ComputeDriver))

    def test_nova_loads_it_by_compute_driver_name(self):
        """What nova.virt.driver.load_compute_driver does with the name."""
        cls = importutils.import_class('nova.virt.' + 'kvmx.KVMXDriver')
        self.assertIs(kvmx_driver.KVMXDriver, cls)

    def test_package_does_not_own_novas_packages(self):
        """Shipping nova/__init__.py or nova/virt/__init__.py would
        overwrite Nova's own on install (and uninstall would remove them)."""
        files = {str(f) for f in importlib.metadata.files('nova-kvmx')}
        self.assertIn('nova/virt/kvmx.py', files)
        self.assertEqual(set(), files & {'nova/__init__.py',
                                         'nova/virt/__init__.py'})


def _public_methods(cls):
    return {name: member for name, member in vars(cls).items()
            if not name.startswith('_') and inspect.isfunction(member)}


class PublicAPITest(testtools.TestCase):
    """Nova's compute manager calls the driver with ComputeDriver's
    signatures (by keyword, often), so an override must keep them; like
    Nova's assertPublicAPISignatures(ComputeDriver, driver)."""

    def test_overrides_keep_compute_driver_signatures(self):
        ours = _public_methods(kvmx_driver.KVMXDriver)
        self.assertGreater(len(ours), 10)
        extra = sorted(set(ours) - set(dir(driver.ComputeDriver)))
        self.assertEqual([], extra, 'public methods ComputeDriver lacks')
        mismatches = []
        for name, method in sorted(ours.items()):
            base = inspect.signature(getattr(driver.ComputeDriver, name))
            mine = inspect.signature(method)
            if list(base.parameters.values()) != list(
                    mine.parameters.values()):
                mismatches.append('%s%s != ComputeDriver.%s%s' % (
                    name, mine, name, base))
        self.assertEqual([], mismatches)

    def test_capabilities_have_exactly_novas_keys(self):
        self.assertEqual(sorted(driver.ComputeDriver.capabilities),
                         sorted(kvmx_driver.KVMXDriver.capabilities))
