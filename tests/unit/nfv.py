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

"""NFV claims made the way Nova makes them, for rendering tests.

A host is captured (or Nova's fake) libvirt capabilities plus Nova's CPU
and hugepage options, reported through nova_kvmx.host.topology; a claim is
what Nova's own fitting (``numa_get_constraints`` then
``numa_fit_instance_to_host``) makes of a flavor and image on that host.
So every claim rendered in these tests is one Nova could really hand us.
"""

import fixtures
import nova.conf
from nova import objects
from nova.virt import hardware
from oslo_config import fixture as config_fixture

from nova_kvmx.host import topology
from tests.unit import builders as b
from tests.unit import test_topology

CONF = nova.conf.CONF

# The 2-socket, 4-node SMT host: cells 0 and 2 keep two cores for
# unpinned guests, everything else is for pinning.
SHARED = '0-1,16-17,8-9,24-25'
DEDICATED = '2-7,18-23,10-15,26-31'


class NFVHost(fixtures.Fixture):
    """A host with Nova's options set; ``claim`` fits guests on it."""

    def __init__(self, caps=None, online=range(32), shared=SHARED,
                 dedicated=DEDICATED, reserved_huge_pages=None):
        super().__init__()
        self.caps = caps or test_topology.snc_host()
        self.online = online
        self.options = dict(cpu_shared_set=shared,
                            cpu_dedicated_set=dedicated)
        self.reserved_huge_pages = reserved_huge_pages

    def _setUp(self):
        conf = self.useFixture(config_fixture.Config(CONF))
        conf.config(group='compute', **self.options)
        conf.config(reserved_huge_pages=self.reserved_huge_pages)
        self.cpu_sets = topology.cpu_sets(self.online)
        self.numa = topology.numa_topology(self.caps, self.cpu_sets,
                                           CONF.reserved_huge_pages)
        self.settings = b.settings(
            host_cpus=topology.guest_cpu_pools(self.numa, self.cpu_sets),
            small_page_kb=topology.small_page_kb(self.numa))

    def claim(self, flavor, image_meta):
        """Nova's claim for ``flavor`` on this host, None if it does not
        fit; raises what Nova's API would for invalid extra specs."""
        constraints = hardware.numa_get_constraints(flavor, image_meta)
        if constraints is None:
            return None
        return hardware.numa_fit_instance_to_host(
            self.numa, constraints, provider_mapping=None)

    def instance(self, vcpus=4, memory_mb=2048, image_meta=None,
                 uuid=b.INSTANCE_UUID, **extra_specs):
        """An instance of a flavor with ``extra_specs`` (``hw_foo`` for
        ``hw:foo``), claimed on this host; AssertionError if it does not
        fit."""
        flavor = b.flavor(vcpus=vcpus, memory_mb=memory_mb, extra_specs={
            key.replace('hw_', 'hw:', 1): str(value)
            for key, value in extra_specs.items()})
        image_meta = image_meta or b.image()
        claim = self.claim(flavor, image_meta)
        if claim is None and hardware.numa_get_constraints(
                flavor, image_meta) is not None:
            raise AssertionError('%r does not fit the host' % extra_specs)
        return b.instance(flavor_obj=flavor, numa_topology=claim, uuid=uuid)

    def host_cell(self, cell_id):
        return next(c for c in self.numa.cells if c.id == cell_id)


def pinning(claim):
    """{vCPU: host CPU} over all cells of a claim."""
    pins = {}
    for cell in claim.cells:
        pins.update(cell.cpu_pinning or {})
    return pins


def plan(host, inst, image_meta=None):
    return b.plan(inst=inst, image_meta=image_meta,
                  driver_settings=host.settings)


objects.register_all()
