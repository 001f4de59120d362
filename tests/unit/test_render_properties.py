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

"""Properties every rendered domain has, over random valid inputs.

Flavors with 1-64 vCPUs, any memory size and a valid (or no) topology
request; any display name XML can carry; image properties and host
settings from the set the driver supports. Whatever the mix, libvirt's
schema accepts the domain, it has exactly the flavor's vCPUs and memory,
the topology is Nova's, and the display name comes back unchanged.
"""

import os
import tempfile

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from nova.virt import hardware
import testtools

from tests.unit import builders as b
from tests.unit import xml_schema

# Hypothesis keeps a cache (not examples: database=None below) under
# ./.hypothesis; keep it out of the source tree.
os.environ.setdefault('HYPOTHESIS_STORAGE_DIRECTORY',
                      os.path.join(tempfile.gettempdir(), 'kvmx-hypothesis'))

# Characters XML 1.0 cannot carry at all (not even escaped). Nova's API
# refuses them in names (it allows printable characters only), so they
# never reach a driver; everything else -- markup characters, tabs and
# newlines, non-ASCII, emoji -- may.
_NOT_XML = ''.join(map(chr, [*range(0x00, 0x09), 0x0b, 0x0c,
                             *range(0x0e, 0x20), 0xfffe, 0xffff]))
xml_text = st.text(st.characters(codec='utf-8',
                                 exclude_characters=_NOT_XML))

_TOPOLOGY_KEYS = ('hw:cpu_sockets', 'hw:cpu_cores', 'hw:cpu_threads')


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def flavors(draw):
    """A flavor whose topology extra specs, if any, Nova can satisfy: some
    of sockets/cores/threads of a real factorisation of vcpus."""
    vcpus = draw(st.integers(1, 64))
    sockets = draw(st.sampled_from(_divisors(vcpus)))
    cores = draw(st.sampled_from(_divisors(vcpus // sockets)))
    threads = vcpus // sockets // cores
    chosen = draw(st.sets(st.sampled_from(_TOPOLOGY_KEYS)))
    specs = {k: str(v) for k, v in zip(_TOPOLOGY_KEYS,
                                       (sockets, cores, threads))
             if k in chosen}
    return b.flavor(vcpus=vcpus, memory_mb=draw(st.integers(1, 4 * 1024**2)),
                    extra_specs=specs)


image_props = st.fixed_dictionaries({}, optional={
    'hw_disk_bus': st.sampled_from(['virtio', 'scsi', 'sata']),
    'hw_machine_type': st.sampled_from(['q35', 'pc', 'pc-q35-7.2',
                                        'pc-i440fx-7.2']),
    'os_command_line': xml_text,
})

driver_settings = st.builds(
    b.settings,
    virt_type=st.sampled_from(['kvm', 'qemu']),
    cpu_mode=st.sampled_from([None, 'host-passthrough', 'host-model',
                              'custom', 'none']),
    cpu_models=st.just(('Cascadelake-Server',)),
    vnc_listen=st.sampled_from([None, '127.0.0.1', '::']),
    disk_cache=st.sampled_from(['none', 'writeback']),
)

guest_files = st.builds(b.files, kernel=st.booleans(), ramdisk=st.booleans(),
                        config_drive=st.booleans())


class RenderPropertiesTest(testtools.TestCase):
    @settings(max_examples=50, deadline=None, database=None)
    @given(flavor=flavors(), name=xml_text, props=image_props,
           host=driver_settings, files=guest_files)
    def test_any_valid_input_renders_a_valid_faithful_domain(
            self, flavor, name, props, host, files):
        image = b.image(**props)
        xml = b.render_xml(inst=b.instance(display_name=name,
                                           flavor_obj=flavor),
                           image_meta=image, guest_files=files,
                           driver_settings=host)
        xml_schema.assert_valid_domain(self, xml)
        root = xml_schema.parse(xml)

        self.assertEqual(str(flavor.vcpus), xml_schema.find(root, 'vcpu').text)
        self.assertEqual(str(flavor.memory_mb * 1024),
                         xml_schema.find(root, 'memory').text)
        self.assertEqual(name, xml_schema.find(
            root, 'metadata/nova:instance/nova:name').text or '')

        top = xml_schema.find(root, 'cpu/topology')
        got = tuple(int(top.get(k)) for k in ('sockets', 'cores', 'threads'))
        nova = hardware.get_best_cpu_topology(flavor, image)
        self.assertEqual((nova.sockets, nova.cores, nova.threads), got)
        for key, value in zip(_TOPOLOGY_KEYS, got):
            if key in flavor.extra_specs:
                self.assertEqual(int(flavor.extra_specs[key]), value)
