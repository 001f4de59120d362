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

"""The checks of nova-compute's start on the instances this host keeps.

Nova's compute manager hands the driver its local instances before it
initialises them (``process_instances_at_startup``). As Nova's libvirt
driver, a ``[compute]`` CPU set changed under instances that need it stops
the service with the option to fix, and an instance pinned to host CPUs
that ``cpu_dedicated_set`` no longer holds is logged (Nova does not stop
there: pinnings of live-migrated instances were not recalculated before
bug 1289064 was fixed).
"""

from nova import exception
from nova.objects import fields
from nova.virt import hardware
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

_SHARED = (None, fields.CPUAllocationPolicy.SHARED)


def check_pinning(conf, instances):
    """Refuse (InvalidConfiguration) a ``[compute] cpu_shared_set`` /
    ``cpu_dedicated_set`` that leaves an instance of this host without the
    kind of CPUs it runs on; warn of pinned CPUs outside the dedicated
    set."""
    shared = conf.compute.cpu_shared_set
    dedicated = conf.compute.cpu_dedicated_set
    for instance in instances:
        if instance.deleted:
            continue
        numa = instance.numa_topology
        if not numa or numa.cpu_policy in _SHARED:
            if dedicated and not shared:
                raise exception.InvalidConfiguration(
                    "This host has unpinned instances but has no CPUs set "
                    "aside for this purpose; configure '[compute] "
                    "cpu_shared_set' instead of, or in addition to, "
                    "'[compute] cpu_dedicated_set'")
            continue
        if shared and not dedicated and not conf.vcpu_pin_set:
            raise exception.InvalidConfiguration(
                "This host has pinned instances but has no CPUs set aside "
                "for this purpose; configure '[compute] cpu_dedicated_set' "
                "instead of, or in addition to, '[compute] cpu_shared_set'.")
        if numa.cpu_policy == fields.CPUAllocationPolicy.MIXED:
            missing = [name for name, value in (
                ('cpu_shared_set', shared), ('cpu_dedicated_set', dedicated))
                if not value]
            if missing:
                raise exception.InvalidConfiguration(
                    "This host has mixed instance requesting both pinned and "
                    "unpinned CPUs but hasn't set aside %s CPUs for this "
                    "purpose; Configure '[compute] %s'." % (
                        'unpinned' if missing[0] == 'cpu_shared_set'
                        else 'pinned', missing[0]))
        available = (hardware.get_vcpu_pin_set() or
                     hardware.get_cpu_dedicated_set())
        pinned = numa.cpu_pinning
        if available and pinned - available:
            LOG.warning("Instance is pinned to host CPUs %(cpus)s but one "
                        "or more of these CPUs are not included in either "
                        "'[compute] cpu_dedicated_set' or 'vcpu_pin_set' "
                        "(missing: %(missing)s); you should update these "
                        "configuration options to include the missing CPUs "
                        "or rebuild or cold migrate this instance.",
                        {'cpus': sorted(pinned),
                         'missing': sorted(pinned - available)},
                        instance=instance)
