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

"""Nova's [libvirt] CPU, machine type and power management options: what
the guest's <cpu> becomes, and what nova-compute refuses to start with.

The start-up checks run against libvirt's test:/// driver, which knows
libvirt's real CPU models and features (its cpu_map) without a host.
"""

import ddt
import libvirt
from nova import exception as nova_exception
import nova.conf
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx import conf as kvmx_conf  # noqa: F401 (registers [kvmx])
from nova_kvmx import exception
from nova_kvmx.guest import cpu_model
from nova_kvmx.host import options
from nova_kvmx.host import resources
from tests.unit import builders as b
from tests.unit import test_traits
from tests.unit import xml_schema

CONF = nova.conf.CONF


@ddt.ddt
class ExtraFlagsTest(testtools.TestCase):
    """``[libvirt] cpu_model_extra_flags`` as Nova reads it."""

    @ddt.data(
        ([], ()),
        (['pdpe1gb'], (('pdpe1gb', 'require'),)),
        (['+SSBD', '-mpx', ' pcid'], (('mpx', 'disable'), ('pcid', 'require'),
                                      ('ssbd', 'require'))),
        (['-hle', '+hle'], (('hle', 'require'),)),
    )
    @ddt.unpack
    def test_parse(self, flags, expected):
        self.assertEqual(expected, cpu_model.parse_extra_flags(flags))


@ddt.ddt
class GuestCPUTest(testtools.TestCase):
    """The domain's <cpu>: mode, model and <feature policy>."""

    FLAGS = (('mpx', 'disable'), ('pdpe1gb', 'require'))

    def cpu(self, flavor=None, **settings):
        xml = b.render_xml(inst=b.instance(flavor_obj=flavor),
                           driver_settings=b.settings(**settings))
        xml_schema.assert_valid_domain(self, xml)
        return xml_schema.find(xml_schema.parse(xml), 'cpu')

    @ddt.data('host-model', 'host-passthrough')
    def test_extra_flags_on_the_host_cpu(self, mode):
        cpu = self.cpu(cpu_mode=mode, cpu_extra_flags=self.FLAGS)
        self.assertEqual(mode, cpu.get('mode'))
        self.assertEqual(
            [('mpx', 'disable'), ('pdpe1gb', 'require')],
            [(f.get('name'), f.get('policy')) for f in cpu.findall('feature')])

    def test_extra_flags_on_a_custom_model(self):
        cpu = self.cpu(cpu_mode='custom', cpu_models=('Haswell',),
                       cpu_extra_flags=self.FLAGS)
        self.assertEqual(('custom', 'Haswell'),
                         (cpu.get('mode'), cpu.findtext('model')))
        self.assertEqual(2, len(cpu.findall('feature')))

    def test_no_mode_no_features(self):
        cpu = self.cpu(virt_type='qemu', cpu_extra_flags=self.FLAGS)
        self.assertIsNone(cpu.get('mode'))
        self.assertEqual([], cpu.findall('feature'))

    MODELS = dict(cpu_mode='custom', cpu_models=('Nehalem', 'Haswell'),
                  cpu_model_features=(
                      ('Nehalem', frozenset({'sse4.2'})),
                      ('Haswell', frozenset({'sse4.2', 'avx2'}))))

    @ddt.data(({}, 'Nehalem'),
              ({'trait:HW_CPU_X86_AVX2': 'required'}, 'Haswell'),
              ({'trait:HW_CPU_X86_SSE42': 'required'}, 'Nehalem'))
    @ddt.unpack
    def test_flavor_traits_pick_the_model(self, extra_specs, model):
        cpu = self.cpu(flavor=b.flavor(extra_specs=extra_specs),
                       **self.MODELS)
        self.assertEqual(model, cpu.findtext('model'))

    def test_no_model_with_the_traits(self):
        ex = self.assertRaises(
            nova_exception.InvalidCPUInfo, b.plan,
            inst=b.instance(flavor_obj=b.flavor(extra_specs={
                'trait:HW_CPU_X86_AVX512F': 'required'})),
            driver_settings=b.settings(**self.MODELS))
        self.assertIn('avx512f', str(ex))
        self.assertIn('Nehalem, Haswell', str(ex))


class CPUTraitsWithFlagsTest(testtools.TestCase):
    """The CPU feature traits follow what guests see, extra flags too."""

    def traits(self, **settings):
        traits = options_traits(b.settings(**settings))
        return {t for t, on in traits.items() if on}

    def test_host_model_with_flags(self):
        # The captured host has ssse3 and fma, not avx512f.
        present = self.traits(cpu_mode='host-model', cpu_extra_flags=(
            ('avx512f', 'require'), ('ssse3', 'disable')))
        self.assertIn('HW_CPU_X86_AVX512F', present)
        self.assertNotIn('HW_CPU_X86_SSSE3', present)
        self.assertIn('HW_CPU_X86_FMA3', present)

    def test_custom_models_features(self):
        present = self.traits(
            cpu_mode='custom', cpu_models=('Nehalem', 'Haswell'),
            cpu_model_features=(('Nehalem', frozenset({'sse4.2'})),
                                ('Haswell', frozenset({'avx2'}))),
            cpu_extra_flags=(('mpx', 'require'),))
        self.assertEqual({'HW_CPU_X86_SSE42', 'HW_CPU_X86_AVX2',
                          'HW_CPU_X86_MPX'}, present)

    def test_default_cpu_reports_no_feature(self):
        self.assertEqual(set(), self.traits(virt_type='qemu'))


def options_traits(settings):
    traits = resources.cpu_traits(test_traits.captured_caps(), settings,
                                  False)
    traits.pop('HW_CPU_HYPERTHREADING')
    return traits


class TestHost(object):
    """What the start-up checks ask of Nova's Host, answered by libvirt's
    test:/// driver; the KVM CPU comparison (no test:/// support) is set
    by the test."""

    def __init__(self, compare_result=2):
        self.conn = libvirt.open('test:///default')
        self.compare_result = compare_result
        self.compared = []

    def get_connection(self):
        return self.conn

    def get_capabilities(self):
        return test_traits.captured_caps()

    def get_cpu_model_names(self):
        return self.conn.getCPUModelNames('x86_64')

    def compare_hypervisor_cpu(self, xml):
        self.compared.append(xml)
        return self.compare_result


class StartupChecksTest(testtools.TestCase):
    """nova-compute does not start with CPU options the host cannot
    realise; the error names the option."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.host = TestHost()
        self.addCleanup(self.host.conn.close)

    def settings(self, virt_type='qemu', **libvirt_opts):
        self.conf.config(group='libvirt', **libvirt_opts)
        return options.cpu_settings(CONF, self.host, virt_type, 'x86_64')

    def assertRefused(self, option, virt_type='qemu', **libvirt_opts):
        ex = self.assertRaises(exception.InvalidOption, self.settings,
                               virt_type, **libvirt_opts)
        self.assertIsInstance(ex, nova_exception.InvalidConfiguration)
        self.assertIn(option, str(ex))
        return str(ex)

    def test_custom_models_in_libvirts_spelling_with_features(self):
        got = self.settings(cpu_mode='custom',
                            cpu_models=['nehalem', 'HASWELL'])
        self.assertEqual(('Nehalem', 'Haswell'), got['cpu_models'])
        features = dict(got['cpu_model_features'])
        self.assertIn('sse4.2', features['Nehalem'])
        self.assertNotIn('avx2', features['Nehalem'])
        self.assertIn('avx2', features['Haswell'])

    def test_unknown_model(self):
        msg = self.assertRefused('[libvirt] cpu_models', cpu_mode='custom',
                                 cpu_models=['Nehalem', 'Pentium9000'])
        self.assertIn('Pentium9000', msg)

    def test_custom_without_models(self):
        self.assertRefused('[libvirt] cpu_mode', cpu_mode='custom')

    def test_models_without_custom(self):
        self.assertRefused('[libvirt] cpu_models',
                           cpu_mode='host-model', cpu_models=['Nehalem'])

    def test_unknown_flag(self):
        msg = self.assertRefused('[libvirt] cpu_model_extra_flags',
                                 cpu_mode='host-model',
                                 cpu_model_extra_flags=['+pdpe1gb', 'nosuch'])
        self.assertIn('nosuch', msg)

    def test_known_flags(self):
        got = self.settings(cpu_mode='custom', cpu_models=['Haswell'],
                            cpu_model_extra_flags=['-MPX', 'pdpe1gb'])
        self.assertEqual((('mpx', 'disable'), ('pdpe1gb', 'require')),
                         got['cpu_extra_flags'])

    def test_flags_without_a_cpu_mode(self):
        # Under TCG without a mode guests get QEMU's default CPU: Nova
        # drops the flags there, nova-kvmx refuses them.
        self.assertRefused('[libvirt] cpu_model_extra_flags',
                           cpu_model_extra_flags=['pdpe1gb'])

    def test_kvm_compares_the_models_with_the_host(self):
        self.settings('kvm', cpu_mode='custom', cpu_models=['Haswell'],
                      cpu_model_extra_flags=['-mpx'])
        self.assertEqual(1, len(self.host.compared))
        self.assertIn('name="mpx" policy="disable"', self.host.compared[0])
        self.host.compare_result = 0
        self.assertRefused('[libvirt] cpu_models', 'kvm', cpu_mode='custom',
                           cpu_models=['Haswell'])

    def test_compare_skipped_by_nova_workaround(self):
        self.host.compare_result = 0
        self.conf.config(skip_cpu_compare_at_startup=True,
                         group='workarounds')
        self.settings('kvm', cpu_mode='custom', cpu_models=['Haswell'])
        self.assertEqual([], self.host.compared)

    def test_novas_options_win(self):
        self.conf.config(cpu_mode='custom', cpu_models=['Nehalem'],
                         group='kvmx')
        got = self.settings(cpu_mode='host-model')
        self.assertEqual(('host-model', ()),
                         (got['cpu_mode'], got['cpu_models']))

    def test_deprecated_kvmx_options_when_novas_are_unset(self):
        self.conf.config(cpu_mode='custom', cpu_models=['Nehalem'],
                         group='kvmx')
        got = self.settings()
        self.assertEqual(('custom', ('Nehalem',)),
                         (got['cpu_mode'], got['cpu_models']))


@ddt.ddt
class HostOptionsTest(testtools.TestCase):
    """Machine type default, realtime priority, power management."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))

    @ddt.data(([], None, 'q35'), ([], 'pc', 'pc'),
              (['aarch64=virt', 'x86_64=pc-q35-7.2'], 'pc', 'pc-q35-7.2'),
              (['aarch64=virt'], None, 'q35'))
    @ddt.unpack
    def test_default_machine_type(self, novas, kvmx, expected):
        self.conf.config(hw_machine_type=novas, group='libvirt')
        if kvmx:
            self.conf.config(machine_type=kvmx, group='kvmx')
        self.assertEqual(expected,
                         options.default_machine_type(CONF, 'x86_64'))

    @ddt.data('x86_64', 'x86_64=', 'x86_64=q35 bad', '=q35')
    def test_malformed_machine_type_entry(self, entry):
        self.conf.config(hw_machine_type=[entry], group='libvirt')
        ex = self.assertRaises(exception.InvalidOption,
                               options.default_machine_type, CONF, 'x86_64')
        self.assertIn('[libvirt] hw_machine_type', str(ex))

    def test_virt_type(self):
        self.assertEqual('kvm', options.virt_type(CONF))
        self.conf.config(virt_type='qemu', group='libvirt')
        self.assertEqual('qemu', options.virt_type(CONF))
        # The deprecated [kvmx] option counts while Nova's is at its
        # default.
        self.conf.config(virt_type='kvm', group='libvirt')
        self.conf.config(virt_type='qemu', group='kvmx')
        self.assertEqual('qemu', options.virt_type(CONF))
        self.conf.config(virt_type='lxc', group='libvirt')
        ex = self.assertRaises(exception.UnsupportedOption,
                               options.virt_type, CONF)
        self.assertIn('[libvirt] virt_type = lxc', str(ex))

    def test_connection_uri(self):
        self.assertEqual('qemu:///system', options.connection_uri(CONF))
        self.conf.config(connection_uri='test:///default', group='kvmx')
        self.assertEqual('test:///default', options.connection_uri(CONF))
        self.conf.config(connection_uri='qemu+tcp://h/system',
                         group='libvirt')
        self.assertEqual('qemu+tcp://h/system',
                         options.connection_uri(CONF))

    def test_realtime_priority(self):
        self.assertEqual(1, options.realtime_priority(CONF))
        self.conf.config(realtime_scheduler_priority=50, group='kvmx')
        self.assertEqual(50, options.realtime_priority(CONF))
        self.conf.config(realtime_scheduler_priority=20, group='libvirt')
        self.assertEqual(20, options.realtime_priority(CONF))
        self.conf.config(realtime_scheduler_priority=100, group='libvirt')
        ex = self.assertRaises(exception.InvalidOption,
                               options.realtime_priority, CONF)
        self.assertIn('[libvirt] realtime_scheduler_priority', str(ex))

    def test_cpu_power_management_refused(self):
        options.check_power_management(CONF)
        self.conf.config(cpu_power_management=True,
                         cpu_power_management_strategy='governor',
                         group='libvirt')
        ex = self.assertRaises(exception.UnsupportedOption,
                               options.check_power_management, CONF)
        self.assertIn('[libvirt] cpu_power_management', str(ex))
        self.assertIn('governor', str(ex))
