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

"""The guest's sockets, cores and threads, as Nova chooses them.

Written here because Nova's ``hardware.get_best_cpu_topology`` tries every
(sockets, cores, threads) up to the vCPU count each: O(vCPUs^3), about 7 s
for a 288-vCPU guest, on every spawn and hard reboot. This walks only the
divisors of the vCPU count and applies Nova's ranking unchanged (limits
and preferences from ``hardware.get_cpu_topology_constraints``; the most
preferred fields matched first, then most sockets x cores, most sockets,
most threads), so the answer is Nova's: the unit tests compare the two.
"""

from nova import exception
from nova import objects
from nova.virt import hardware


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def _score(topology, preferred):
    """How many of the preferred sockets/cores/threads ``topology`` has."""
    return sum(1 for want, got in zip(preferred, topology) if want and
               want == got)


def best_cpu_topology(flavor, image_meta):
    """``objects.VirtCPUTopology`` Nova's libvirt driver would give the
    guest; raises what Nova raises for impossible limits."""
    preferred, maximum = hardware.get_cpu_topology_constraints(
        flavor, image_meta)
    vcpus = flavor.vcpus
    limits = [min(vcpus, limit) for limit in (
        maximum.sockets, maximum.cores, maximum.threads)]
    possible = [(s, c, vcpus // s // c)
                for s in _divisors(vcpus) if s <= limits[0]
                for c in _divisors(vcpus // s) if c <= limits[1]
                if vcpus // s // c <= limits[2]]
    if not possible:
        raise exception.ImageVCPULimitsRangeImpossible(
            vcpus=vcpus, sockets=limits[0], cores=limits[1],
            threads=limits[2])
    want = (preferred.sockets, preferred.cores, preferred.threads)
    sockets, cores, threads = max(possible, key=lambda t: (
        _score(t, want), t[0] * t[1], t[0], t[2]))
    return objects.VirtCPUTopology(sockets=sockets, cores=cores,
                                   threads=threads)
