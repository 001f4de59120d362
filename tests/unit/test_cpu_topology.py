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

"""Our guest CPU topology is Nova's, for any flavor and image request."""

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from nova import exception
from nova.virt import hardware
import testtools

from nova_kvmx.guest import cpu_topology
from tests.unit import builders as b
from tests.unit import test_render_properties  # noqa: F401 (cache dir)

_FIELDS = ('sockets', 'cores', 'threads')
_small = st.integers(1, 12).map(str)


def _outcome(fn, flavor, image):
    """(sockets, cores, threads), or the exception class raised."""
    try:
        top = fn(flavor, image)
    except exception.NovaException as ex:
        return type(ex)
    return tuple(getattr(top, f) for f in _FIELDS)


class BestTopologyTest(testtools.TestCase):
    @settings(max_examples=300, deadline=None, database=None)
    @given(vcpus=st.integers(1, 48),
           flavor_specs=st.dictionaries(st.sampled_from(
               ['hw:cpu_%s' % f for f in _FIELDS] +
               ['hw:cpu_max_%s' % f for f in _FIELDS]), _small),
           image_props=st.dictionaries(st.sampled_from(
               ['hw_cpu_%s' % f for f in _FIELDS] +
               ['hw_cpu_max_%s' % f for f in _FIELDS]), st.integers(1, 12)))
    def test_same_as_nova(self, vcpus, flavor_specs, image_props):
        flavor = b.flavor(vcpus=vcpus, extra_specs=flavor_specs)
        image = b.image(**image_props)
        self.assertEqual(
            _outcome(hardware.get_best_cpu_topology, flavor, image),
            _outcome(cpu_topology.best_cpu_topology, flavor, image))

    def test_huge_guest(self):
        # 288 vCPUs: Nova's enumeration takes seconds; the answer is the
        # one Nova gives (most sockets x cores, one thread).
        top = cpu_topology.best_cpu_topology(b.flavor(vcpus=288), b.image())
        self.assertEqual((288, 1, 1), (top.sockets, top.cores, top.threads))
