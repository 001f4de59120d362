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

"""Random flavors, images and hosts through Nova and then our driver.

Each example goes the way a boot request goes: Nova's extra spec validators
(the flavor API), Nova's flavor/image checks (the servers API), Nova's NUMA
fitting on a host shape (scheduler and claim), then our planning and
rendering. Whatever the input, the outcome is one of: refused by Nova with
a Nova exception, not placed (no host cell fits), refused by our driver
with a Nova exception carrying a message, or a domain libvirt's schema
accepts with the flavor's vCPUs and memory. Any other exception is a bug.

Extra spec keys and image property names are the real ones; values are
drawn from their valid values, from near misses and from random text.
Hosts are the captured 4-node SMT server and Nova's fake libvirt shapes,
with random CPU sets and huge page reservations.
"""

import collections
import dataclasses

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from nova.api.validation.extra_specs import validators
from nova.compute import api as compute_api
from nova import exception
from nova.virt import hardware
import testtools

from nova_kvmx.guest import render
from tests import reliability_log
from tests.unit import builders as b
from tests.unit import nfv
from tests.unit import test_render_properties
from tests.unit import test_topology
from tests.unit import xml_schema

EXAMPLES = 300


def cpu_specs(max_cpu=8):
    """CPU set strings as users write them: '0-3', '^1', '0,2-3', ..."""
    cpu = st.integers(0, max_cpu)
    item = st.one_of(cpu.map(str), st.tuples(cpu, cpu).map(
        lambda r: '%d-%d' % (min(r), max(r))), cpu.map(lambda c: '^%d' % c))
    return st.lists(item, min_size=1, max_size=3).map(','.join)


def numbers(low=0, high=8):
    return st.integers(low, high).map(str)


# Near misses, markup, paths, characters XML cannot carry (NUL, escape,
# a lone surrogate: what a non-UTF-8 byte becomes), long strings.
junk = st.one_of(
    st.text(max_size=12),
    st.sampled_from(['', ' ', '-1', '0', '1.5', '^', '0-', '99999999999',
                     'yes', 'none', 'any', '<x/>', '"\'&', '../..', 'a\x00b',
                     '\x1b[0m', 'a\udc80b', 'x' * 4096]))
booleans = st.sampled_from(['true', 'false', 'yes', 'no', '1', '0'])
page_sizes = st.sampled_from(['small', 'large', 'any', '4KB', '2MB', '1GB',
                              '2048', '1048576', '3MB', '4'])

# The keys a tenant's NFV flavor or image uses, with values around theirs.
SPEC_VALUES = {
    'hw:cpu_policy': st.sampled_from(['shared', 'dedicated', 'mixed']),
    'hw:cpu_thread_policy': st.sampled_from(['prefer', 'isolate',
                                             'require']),
    'hw:emulator_threads_policy': st.sampled_from(['share', 'isolate']),
    'hw:cpu_realtime': booleans,
    'hw:cpu_realtime_mask': cpu_specs(),
    'hw:cpu_dedicated_mask': cpu_specs(),
    'hw:numa_nodes': numbers(1, 4),
    'hw:numa_cpus.0': cpu_specs(),
    'hw:numa_cpus.1': cpu_specs(),
    'hw:numa_mem.0': st.sampled_from(['0', '128', '256', '512', '1024']),
    'hw:numa_mem.1': st.sampled_from(['0', '128', '256', '512', '1024']),
    'hw:mem_page_size': page_sizes,
    'hw:cpu_sockets': numbers(1), 'hw:cpu_cores': numbers(1),
    'hw:cpu_threads': numbers(1), 'hw:cpu_max_sockets': numbers(1),
    'hw:cpu_max_cores': numbers(1), 'hw:cpu_max_threads': numbers(1),
    'hw:pmu': booleans,
    'hw:locked_memory': booleans,
    'hw:vif_multiqueue_enabled': booleans,
    'hw:serial_port_count': numbers(),
}

PROP_VALUES = {
    'hw_cpu_policy': SPEC_VALUES['hw:cpu_policy'],
    'hw_cpu_thread_policy': SPEC_VALUES['hw:cpu_thread_policy'],
    'hw_cpu_realtime_mask': cpu_specs(),
    'hw_numa_nodes': numbers(1, 4),
    'hw_numa_cpus.0': cpu_specs(),
    'hw_numa_mem.0': SPEC_VALUES['hw:numa_mem.0'],
    'hw_mem_page_size': page_sizes,
    'hw_cpu_sockets': numbers(1), 'hw_cpu_cores': numbers(1),
    'hw_cpu_threads': numbers(1), 'hw_cpu_max_sockets': numbers(1),
    'hw_pmu': booleans,
    'hw_locked_memory': booleans,
    'hw_vif_multiqueue_enabled': booleans,
    'hw_machine_type': st.sampled_from(['q35', 'pc', 'pc-q35-7.2']),
    'hw_disk_bus': st.sampled_from(['virtio', 'scsi', 'sata', 'ide',
                                    'floppy']),
    'hw_vif_model': st.sampled_from(['virtio', 'e1000', 'rtl8139',
                                     'xen']),
    'os_command_line': test_render_properties.xml_text,
}


def values_of(table, with_junk=False):
    """Some of ``table``'s keys, each with one of its values (or, half of
    the time, junk)."""
    def value(key):
        return st.one_of(table[key], junk) if with_junk else table[key]
    return st.dictionaries(
        st.sampled_from(sorted(table)), st.just(None), max_size=6).flatmap(
        lambda keys: st.fixed_dictionaries({key: value(key)
                                            for key in keys}))


class Host(nfv.NFVHost):
    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.shape = shape

    def __repr__(self):
        return 'Host(%s, %r, reserved_huge_pages=%r)' % (
            self.shape, self.options, self.reserved_huge_pages)


@st.composite
def hosts(draw):
    """An NFVHost: captured or Nova's fake shapes, random CPU sets and huge
    page reservations."""
    if draw(st.booleans()):
        caps, count = test_topology.snc_host(), 32
        shape = 'captured 2-socket SNC host'
    else:
        nodes, sockets, cores, threads = (
            draw(st.integers(1, 4)), draw(st.integers(1, 2)),
            draw(st.integers(1, 4)), draw(st.integers(1, 2)))
        caps = test_topology.fake_host(nodes, sockets, cores, threads)
        count = nodes * sockets * cores * threads
        shape = 'fake_host(%d, %d, %d, %d)' % (nodes, sockets, cores,
                                               threads)
    all_cpus = list(range(count))
    dedicated = draw(st.sets(st.sampled_from(all_cpus)))
    shared = draw(st.sets(st.sampled_from(all_cpus)).map(
        lambda s: s - dedicated))
    reserved = draw(st.sampled_from([None, ['node:0,size:2048,count:64'],
                                     ['node:0,size:1048576,count:1']]))
    return Host(shape, caps=caps, online=all_cpus,
                shared=hardware.format_cpu_spec(shared) or None,
                dedicated=hardware.format_cpu_spec(dedicated) or None,
                reserved_huge_pages=reserved)


# The image properties Nova passes on as they are (no enum, no number):
# often junk, whatever else the image has.
free_text_junk = st.fixed_dictionaries({}, optional={
    'os_command_line': junk, 'hw_machine_type': junk})
memory = st.sampled_from([128, 256, 1024, 2048, 3000])
virt_types = st.sampled_from(['kvm', 'qemu'])


def image_dict(props):
    return {'id': b.IMAGE_ID, 'name': 'fuzz', 'status': 'active',
            'disk_format': 'qcow2', 'container_format': 'bare',
            'min_ram': 0, 'min_disk': 0, 'size': 0, 'properties': props}


class NovaRefused(Exception):
    """Wraps what Nova's API or scheduler refused, to tell it from what our
    driver refused."""


class FuzzTest(testtools.TestCase):
    """Every outcome is a valid domain or a Nova exception with a
    message."""

    def setUp(self):
        super().setUp()
        self.outcomes = collections.Counter()
        self.addCleanup(lambda: reliability_log.record(
            'fuzz', self.id(), examples=sum(self.outcomes.values()),
            outcomes=dict(self.outcomes)))

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(vcpus=st.integers(1, 8), memory_mb=memory, host=hosts(),
           specs=values_of(SPEC_VALUES), props=values_of(PROP_VALUES),
           virt_type=virt_types, kernel=st.booleans())
    def test_valid_values(self, **kwargs):
        self.check(**kwargs)

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(vcpus=st.integers(1, 8), memory_mb=memory, host=hosts(),
           specs=values_of(SPEC_VALUES, with_junk=True),
           props=values_of(PROP_VALUES), virt_type=virt_types,
           kernel=st.booleans())
    def test_extra_specs_with_junk(self, **kwargs):
        self.check(**kwargs)

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(vcpus=st.integers(1, 8), memory_mb=memory, host=hosts(),
           specs=values_of(SPEC_VALUES),
           props=st.tuples(values_of(PROP_VALUES, with_junk=True),
                           free_text_junk).map(lambda d: {**d[0], **d[1]}),
           virt_type=virt_types, kernel=st.just(True))
    def test_image_properties_with_junk(self, **kwargs):
        self.check(**kwargs)

    def check(self, host, **kwargs):
        try:
            host.setUp()
            host.cleanUp()
        except exception.InvalidConfiguration:
            # nova-compute would not start on it: not a host to boot on.
            self.outcomes['host refused by nova-compute'] += 1
            return
        try:
            xml, flavor = self.boot(host, **kwargs)
        except NovaRefused as ex:
            self.assert_typed(ex.__cause__)
            self.outcomes['Nova refused: %s' %
                          type(ex.__cause__).__name__] += 1
            return
        except exception.NovaException as ex:
            self.assert_typed(ex)
            self.outcomes['driver refused: %s' % type(ex).__name__] += 1
            return
        if xml is None:
            self.outcomes['no host cell fits'] += 1
            return
        self.assertIsNone(xml_schema.domain_errors(xml), xml)
        root = xml_schema.parse(xml)
        self.assertEqual(str(flavor.vcpus), root.findtext('vcpu'))
        self.assertEqual(str(flavor.memory_mb * 1024),
                         root.findtext('memory'))
        self.outcomes['domain'] += 1

    def assert_typed(self, ex):
        self.assertIsInstance(ex, exception.NovaException)
        self.assertTrue(str(ex).strip(), repr(ex))

    def boot(self, host, vcpus, memory_mb, specs, props, virt_type, kernel):
        """The domain XML (None if Nova finds no room) and the flavor."""
        flavor = b.flavor(vcpus=vcpus, memory_mb=memory_mb,
                          extra_specs=specs)
        image = image_dict(props)
        with host:
            try:
                for key, value in specs.items():
                    validators.validate(key, value)
                compute_api.API._validate_flavor_image_nostatus(
                    None, image, flavor, None)
                image_meta = compute_api._get_image_meta_obj(image)
                claim = host.claim(flavor, image_meta)
                constraints = hardware.numa_get_constraints(flavor,
                                                            image_meta)
            except exception.NovaException as ex:
                raise NovaRefused() from ex
            if claim is None and constraints is not None:
                return None, flavor
            guest = b.plan(
                inst=b.instance(flavor_obj=flavor, numa_topology=claim),
                image_meta=image_meta, guest_files=b.files(kernel=kernel),
                driver_settings=dataclasses.replace(
                    host.settings, virt_type=virt_type))
        return render.render_domain(guest), flavor
