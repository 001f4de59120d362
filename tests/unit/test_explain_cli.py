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

"""``nova-kvmx explain`` as an operator runs it: a nova.conf, saved host
files, the output and the exit status; bad input gets a one-line error
naming what is wrong, never a traceback."""

import configparser
import io
import json
import os
import shutil
import subprocess
import sys

import fixtures
import nova.conf
from nova.pci import request as pci_request
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx.cmd import main
from tests.unit import test_explain
from tests.unit import xml_schema

CONF = nova.conf.CONF
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NFV_SPECS = ['hw:cpu_policy=dedicated', 'hw:numa_nodes=2',
             'hw:mem_page_size=1GB', 'hw:emulator_threads_policy=isolate',
             'hw:cpu_realtime=yes', 'hw:cpu_realtime_mask=^0',
             'pci_passthrough:alias=vf:1']


class CommandTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # main() loads the files into Nova's global CONF: reset it after.
        self.useFixture(config_fixture.Config(CONF))
        self.useFixture(fixtures.FakeLogger())
        self.addCleanup(pci_request.get_alias_from_config.cache_clear)
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def nova_conf(self, options):
        """A nova.conf; a list value is a multi-valued option, written as
        one "key = value" line per value, as oslo.config reads it."""
        lines = []
        for group, values in options.items():
            lines.append('[%s]' % group)
            for key, value in values.items():
                for item in value if isinstance(value, list) else [value]:
                    lines.append('%s = %s' % (key, item))
        path = os.path.join(self.tmp, 'nova.conf')
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        return path

    def run_main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        status = main.main(list(argv), out=out, err=err)
        return status, out.getvalue(), err.getvalue()


class ExplainCommandTest(CommandTestCase):

    def explain(self, *args, options=test_explain.SNC_OPTIONS):
        return self.run_main(
            'explain', '--config-file', self.nova_conf(options),
            '--capabilities', test_explain.SNC_CAPS,
            '--node-devices', test_explain.SNC_DEVICES, *args)

    def test_fits_as_a_table(self):
        status, out, err = self.explain(
            '--vcpus', '8', '--ram', '8192',
            *[a for s in NFV_SPECS for a in ('--extra-spec', s)])

        self.assertEqual((0, ''), (status, err))
        self.assertIn('Verdict: FITS', out)
        self.assertIn('Placement: resources MEMORY_MB=8192, PCPU=9', out)
        self.assertIn('emulator threads (policy isolate): host CPUs', out)
        self.assertIn('vf     0000:81:02.', out)
        self.assertNotIn('Why not', out)

    def test_fits_as_json(self):
        status, out, _err = self.explain(
            '--vcpus', '8', '--ram', '8192', '--format', 'json',
            *[a for s in NFV_SPECS for a in ('--extra-spec', s)])

        self.assertEqual(0, status)
        result = json.loads(out)
        self.assertTrue(result['fits'])
        self.assertEqual(8, len(result['vcpu_pins']))
        self.assertEqual(['1G', '1G'],
                         [c['page_size'] for c in result['guest_cells']])
        self.assertEqual(4, len(result['host']['cells']))

    def test_domain_xml_realises_the_pins_shown(self):
        status, out, _err = self.explain(
            '--vcpus', '8', '--ram', '8192', '--format', 'json', '--xml',
            *[a for s in NFV_SPECS for a in ('--extra-spec', s)])

        self.assertEqual(0, status)
        result = json.loads(out)
        xml_schema.assert_valid_domain(self, result['domain_xml'])
        root = xml_schema.parse(result['domain_xml'])
        self.assertEqual(
            {str(p['vcpu']): p['host_cpus'] for p in result['vcpu_pins']},
            {pin.get('vcpu'): pin.get('cpuset') for pin in
             xml_schema.findall(root, 'cputune/vcpupin')})
        self.assertEqual(result['emulator_threads']['host_cpus'],
                         xml_schema.find(root, 'cputune/emulatorpin')
                         .get('cpuset'))
        self.assertEqual([str(c['host_cell']) for c in result['guest_cells']],
                         [m.get('nodeset') for m in xml_schema.findall(
                             root, 'numatune/memnode')])

    def test_domain_xml_has_the_hotplug_slots_of_nova_conf(self):
        """[libvirt] num_pcie_ports, as the driver renders it."""
        status, out, _err = self.explain(
            '--vcpus', '2', '--ram', '1024', '--format', 'json', '--xml',
            options=dict(test_explain.SNC_OPTIONS,
                         libvirt={'num_pcie_ports': 16}))

        self.assertEqual(0, status)
        root = xml_schema.parse(json.loads(out)['domain_xml'])
        self.assertEqual(16, len(xml_schema.findall(
            root, "devices/controller[@model='pcie-root-port']")))

    def test_no_domain_xml_when_it_does_not_fit(self):
        status, out, _err = self.explain(
            '--vcpus', '4', '--ram', '20480', '--xml',
            '--extra-spec', 'hw:cpu_policy=dedicated',
            '--extra-spec', 'hw:mem_page_size=1GB')
        self.assertEqual(1, status)
        self.assertNotIn('Domain XML', out)

    def test_does_not_fit(self):
        status, out, err = self.explain(
            '--vcpus', '4', '--ram', '20480',
            '--extra-spec', 'hw:cpu_policy=dedicated',
            '--extra-spec', 'hw:mem_page_size=1GB')

        self.assertEqual((1, ''), (status, err))
        self.assertIn('Verdict: DOES NOT FIT', out)
        self.assertIn('cells 1-3: guest node 0: needs 20 free 1G pages, '
                      'has 16', out)

    def test_image_property(self):
        status, out, _err = self.explain(
            '--vcpus', '2', '--ram', '1024', '--format', 'json',
            '--image-property', 'hw_cpu_policy=dedicated',
            '--image-property', 'hw_colour=blue')

        self.assertEqual(0, status)
        result = json.loads(out)
        self.assertEqual({'MEMORY_MB': 1024, 'PCPU': 2},
                         result['placement']['resources'])
        self.assertIn('Nova ignores unknown image properties: hw_colour',
                      result['notes'])

    def assertBadInput(self, status, out, err, *fragments):
        self.assertEqual((2, ''), (status, out))
        self.assertTrue(err.startswith('nova-kvmx explain: error: '), err)
        self.assertEqual(1, len(err.splitlines()), err)
        for fragment in fragments:
            self.assertIn(fragment, err)

    def test_unknown_extra_spec(self):
        self.assertBadInput(*self.explain(
            '--vcpus', '1', '--ram', '512', '--extra-spec', 'hw:numa_node=1'),
            "extra spec 'hw:numa_node' does not appear to be a valid")

    def test_bad_extra_spec_value(self):
        self.assertBadInput(*self.explain(
            '--vcpus', '1', '--ram', '512',
            '--extra-spec', 'hw:cpu_policy=pinned'),
            "hw:cpu_policy=pinned: Validation failed; 'pinned' is not one "
            "of: dedicated, shared, mixed")

    def test_extra_spec_without_value(self):
        self.assertBadInput(*self.explain(
            '--vcpus', '1', '--ram', '512', '--extra-spec', 'hw:numa_nodes'),
            "--extra-spec 'hw:numa_nodes' is not of the form key=value")

    def test_bad_image_property(self):
        self.assertBadInput(*self.explain(
            '--vcpus', '1', '--ram', '512',
            '--image-property', 'hw_cpu_policy=pinned'),
            'Invalid image metadata')

    def test_configuration_that_does_not_fit_the_host(self):
        options = dict(test_explain.SNC_OPTIONS, compute={
            'cpu_dedicated_set': '2-15,40'})
        self.assertBadInput(*self.explain(
            '--vcpus', '1', '--ram', '512', options=options),
            "'[compute] cpu_dedicated_set' names CPUs 40 that are not "
            "online")

    def test_missing_config_file(self):
        self.assertBadInput(*self.run_main(
            'explain', '--config-file', os.path.join(self.tmp, 'nope.conf'),
            '--capabilities', test_explain.SNC_CAPS, '--vcpus', '1',
            '--ram', '512'), 'nope.conf')

    def explain_caps(self, caps, *args):
        return self.run_main(
            'explain', '--config-file', self.nova_conf({}),
            '--capabilities', caps, '--vcpus', '1', '--ram', '512', *args)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_missing_capabilities(self):
        path = os.path.join(self.tmp, 'caps.xml')
        self.assertBadInput(*self.explain_caps(path),
                            'Cannot read %s: No such file or directory'
                            % path)

    def test_capabilities_not_xml(self):
        path = self.write('caps.xml', 'virsh: command not found\n')
        self.assertBadInput(*self.explain_caps(path),
                            'Cannot read %s: not well-formed XML' % path)

    def test_capabilities_of_something_else(self):
        path = self.write('caps.xml', '<domain type="kvm"><name>x</name>'
                                      '</domain>')
        self.assertBadInput(*self.explain_caps(path), 'Cannot read %s: '
                            % path, 'virsh capabilities')

    def test_node_device_dump_with_a_bad_file(self):
        dump = os.path.join(self.tmp, 'dump')
        shutil.copytree(test_explain.SNC_DEVICES, dump)
        bad = os.path.join(dump, 'pci_0000_81_02_2.xml')
        with open(bad, 'w') as f:
            f.write('<device><name>pci_0000_81_02_2</name>')
        self.assertBadInput(
            *self.explain_caps(test_explain.SNC_CAPS, '--node-devices',
                               dump),
            'Cannot read %s: not well-formed XML' % bad)

    def test_node_device_dump_is_not_a_directory(self):
        self.assertBadInput(
            *self.explain_caps(test_explain.SNC_CAPS, '--node-devices',
                               test_explain.SNC_CAPS),
            'Cannot read %s: not a directory' % test_explain.SNC_CAPS)

    def test_node_devices_need_capabilities(self):
        self.assertBadInput(*self.run_main(
            'explain', '--config-file', self.nova_conf({}),
            '--node-devices', test_explain.SNC_DEVICES,
            '--vcpus', '1', '--ram', '512'),
            '--node-devices needs --capabilities')

    def test_unreachable_libvirt(self):
        self.assertBadInput(*self.run_main(
            'explain', '--config-file', self.nova_conf({}),
            '--connection-uri', 'qemu+unix:///system?socket=%s/nope'
            % self.tmp, '--vcpus', '1', '--ram', '512'),
            'Cannot connect to libvirt at qemu+unix:///system?socket=')


class EntryPointTest(testtools.TestCase):

    def test_console_script_is_main(self):
        parser = configparser.ConfigParser()
        parser.read(os.path.join(REPO_ROOT, 'setup.cfg'))
        scripts = dict(
            line.split('=', 1) for line in parser.get(
                'entry_points', 'console_scripts').split('\n') if line)
        self.assertEqual('nova_kvmx.cmd.main:main',
                         scripts['nova-kvmx '].strip())

    def test_runs_as_a_module(self):
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_kvmx.cmd', 'explain', '--help'],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertIn('--extra-spec KEY=VALUE', proc.stdout)
        self.assertEqual('', proc.stderr)
