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

"""Checks of the DevStack plugin (devstack/plugin.sh and devstack/settings).

Besides syntax and shellcheck, the plugin is run the way DevStack runs it
(``source settings``, then ``source plugin.sh <mode> <phase>``) in bash,
against stubs of the DevStack functions it calls. The ini stubs really
edit the INI file, so the tests read back the configuration Nova would get
(with Nova's own option definitions for the multi-valued options), and the
``openstack`` stub records the flavors the extra phase creates, which are
then put through Nova's API validation.
"""

import configparser
import os
import shutil
import subprocess
import sys
import tempfile

import fixtures
import nova.conf
from nova.conf import compute as compute_conf
from nova.conf import pci as pci_conf
from nova.pci import request as pci_request
from nova.pci import whitelist
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx.cmd import request
from nova_kvmx.host import topology

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEVSTACK_DIR = os.path.join(REPO_ROOT, 'devstack')
PLUGIN = os.path.join(DEVSTACK_DIR, 'plugin.sh')
SETTINGS = os.path.join(DEVSTACK_DIR, 'settings')
TIMEOUT = 60

# Stubs of the DevStack functions the plugin uses, with DevStack's
# signatures. The ini functions really edit the file, line by line as
# DevStack's sed-based ones do (so multi-valued options keep one line per
# value): ``iniset`` replaces the option's line or inserts it after the
# section header (adding the section at the end if missing),
# ``iniadd_literal`` inserts a line after the header, ``inidelete`` removes
# the option's lines. ``install_package`` and friends and ``openstack`` only
# record their arguments in $CALLS_LOG; ``openstack flavor show`` succeeds
# for the names in $EXISTING_FLAVORS.
STUBS = r'''
function is_service_enabled {
    local service
    for service in "$@"; do
        [[ ",${ENABLED_SERVICES}," == *",${service},"* ]] && return 0
    done
    return 1
}
function trueorfalse {
    case "${!2:-}" in
        1|[yY]es|YES|[tT]rue|TRUE) echo True ;;
        0|[nN]o|NO|[fF]alse|FALSE) echo False ;;
        *) echo "$1" ;;
    esac
}
function echo_summary { echo "summary: $*" >&2; }
function warn { echo "warn: $*" >&2; }
function die { echo "die: $*" >&2; exit 1; }
function install_package { echo "install_package $*" >> "$CALLS_LOG"; }
function setup_install { echo "setup_install $*" >> "$CALLS_LOG"; }
function setup_develop { echo "setup_develop $*" >> "$CALLS_LOG"; }
function pip_install { echo "pip_install $*" >> "$CALLS_LOG"; }
function openstack {
    echo "openstack $*" >> "$CALLS_LOG"
    if [[ "$*" == *" flavor show "* ]]; then
        [[ " ${EXISTING_FLAVORS:-} " == *" ${!#} "* ]]
    fi
}
function _ini {
    "$PYTHON" - "$@" <<'PY'
import re
import sys

action, path, section, option = sys.argv[1:5]
value = sys.argv[5] if len(sys.argv) > 5 else None
try:
    with open(path) as f:
        lines = f.read().splitlines()
except FileNotFoundError:
    lines = []
header = '[%s]' % section
if header not in lines:
    if action == 'iniadd_literal':
        sys.exit(0)
    lines += ['', header]
start = lines.index(header) + 1
end = next((i for i in range(start, len(lines))
            if lines[i].startswith('[')), len(lines))
mine = [i for i in range(start, end)
        if re.match(r'%s\s*=' % re.escape(option), lines[i])]
line = '%s = %s' % (option, value)
if action == 'iniset' and mine:
    lines[mine[0]] = line
elif action in ('iniset', 'iniadd_literal'):
    lines.insert(start, line)
else:
    lines = [l for i, l in enumerate(lines) if i not in mine]
with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
PY
}
function iniset {
    [[ "$1" == "-sudo" ]] && shift
    _ini iniset "$@"
}
function iniadd_literal {
    [[ "$1" == "-sudo" ]] && shift
    _ini iniadd_literal "$@"
}
function inidelete {
    [[ "$1" == "-sudo" ]] && shift
    _ini inidelete "$@"
}
'''

# Stricter than DevStack (which runs with errexit only): an unset variable
# in the plugin is a failure here.
RUNNER = STUBS + r'''
set -o errexit -o nounset -o pipefail
source "$PLUGIN_DIR/settings"
source "$PLUGIN_DIR/plugin.sh" "$@"
'''


class TestDevstackSyntax(testtools.TestCase):

    def _check(self, cmd):
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=TIMEOUT)
        self.assertEqual(0, proc.returncode,
                         '%s failed:\n%s%s'
                         % (' '.join(cmd), proc.stdout, proc.stderr))

    def test_bash_syntax_plugin(self):
        self._check(['bash', '-n', PLUGIN])

    def test_bash_syntax_settings(self):
        self._check(['bash', '-n', SETTINGS])

    def test_shellcheck(self):
        shellcheck = shutil.which('shellcheck')
        if shellcheck is None:
            self.skipTest('shellcheck is not installed (apt-get install '
                          'shellcheck); bash -n still checks the syntax')
        self._check([shellcheck, '--shell=bash', PLUGIN, SETTINGS])


class DevstackTestCase(testtools.TestCase):
    """Runs the plugin's phases against the stubs, on a temp nova.conf."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix='nova-kvmx-devstack-')
        self.addCleanup(shutil.rmtree, self.tmp)
        self.nova_conf = os.path.join(self.tmp, 'nova.conf')
        self.nova_cpu_conf = os.path.join(self.tmp, 'nova-cpu.conf')
        self.calls_log = os.path.join(self.tmp, 'calls.log')
        # What DevStack's lib/nova and its libvirt hypervisor plugin have
        # written to nova.conf before the post-config phase.
        with open(self.nova_conf, 'w') as f:
            f.write('[DEFAULT]\n'
                    'compute_driver = libvirt.LibvirtDriver\n'
                    'debug = True\n'
                    '[libvirt]\n'
                    'virt_type = kvm\n')

    def _run(self, *args, **variables):
        env = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'HOME': self.tmp,
            'PYTHON': sys.executable,
            'PLUGIN_DIR': DEVSTACK_DIR,
            'CALLS_LOG': self.calls_log,
            'DEST': os.path.join(self.tmp, 'stack'),
            'NOVA_CONF': self.nova_conf,
            'NOVA_CPU_CONF': self.nova_cpu_conf,
            'ENABLED_SERVICES': 'key,n-api,n-cpu,placement-api',
            'VIRT_DRIVER': 'libvirt',
            # stack.sh sets these before any plugin phase runs.
            'REGION_NAME': 'RegionOne',
            'OS_CLOUD': 'devstack-admin',
        }
        env.update(variables)
        proc = subprocess.run(
            ['bash', '-c', RUNNER, 'plugin.sh'] + list(args),
            cwd=self.tmp, env=env, capture_output=True, text=True,
            timeout=TIMEOUT)
        self.assertEqual(0, proc.returncode,
                         'plugin.sh %s failed:\n%s%s'
                         % (' '.join(args), proc.stdout, proc.stderr))
        return proc

    def _start_nova_compute(self):
        # DevStack's start_nova_compute builds nova-cpu.conf by copying
        # nova.conf (then merging local.conf): that is the file
        # nova-compute reads.
        shutil.copyfile(self.nova_conf, self.nova_cpu_conf)
        # strict=False: a multi-valued option has one line per value.
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        self.assertEqual([self.nova_cpu_conf],
                         parser.read(self.nova_cpu_conf))
        return parser

    def _calls(self):
        if not os.path.exists(self.calls_log):
            return []
        with open(self.calls_log) as f:
            return f.read().splitlines()


class TestDevstackPlugin(DevstackTestCase):

    def test_post_config(self):
        self._run('stack', 'post-config',
                  NOVA_KVMX_VIRT_TYPE='qemu',
                  NOVA_KVMX_CONNECTION_URI='qemu+tcp://localhost/system',
                  NOVA_KVMX_CPU_DEDICATED_SET='4-7,^6',
                  NOVA_KVMX_CPU_SHARED_SET='2-3')
        conf = self._start_nova_compute()

        self.assertEqual('kvmx.KVMXDriver',
                         conf.get('DEFAULT', 'compute_driver'))
        self.assertEqual('qemu', conf.get('libvirt', 'virt_type'))
        self.assertEqual('qemu+tcp://localhost/system',
                         conf.get('libvirt', 'connection_uri'))
        self.assertEqual('4-7,^6', conf.get('compute', 'cpu_dedicated_set'))
        self.assertEqual('2-3', conf.get('compute', 'cpu_shared_set'))
        # What was there before is kept.
        self.assertEqual('True', conf.get('DEFAULT', 'debug'))
        self.assertEqual([], self._calls())

    def test_post_config_defaults(self):
        self._run('stack', 'post-config')
        conf = self._start_nova_compute()

        self.assertEqual('kvmx.KVMXDriver',
                         conf.get('DEFAULT', 'compute_driver'))
        expected_virt_type = 'kvm' if os.path.exists('/dev/kvm') else 'qemu'
        self.assertEqual(expected_virt_type,
                         conf.get('libvirt', 'virt_type'))
        self.assertEqual('qemu:///system',
                         conf.get('libvirt', 'connection_uri'))
        # The CPU sets are Nova's own options: left alone unless asked.
        self.assertFalse(conf.has_option('compute', 'cpu_dedicated_set'))
        self.assertFalse(conf.has_option('compute', 'cpu_shared_set'))

    def test_post_config_only_dedicated_set(self):
        self._run('stack', 'post-config', NOVA_KVMX_CPU_DEDICATED_SET='2-3')
        conf = self._start_nova_compute()

        self.assertEqual('2-3', conf.get('compute', 'cpu_dedicated_set'))
        self.assertFalse(conf.has_option('compute', 'cpu_shared_set'))

    def test_install(self):
        self._run('stack', 'install')

        calls = self._calls()
        self.assertEqual(2, len(calls), calls)
        packages = calls[0].split()
        self.assertEqual('install_package', packages[0])
        for package in ('libvirt-daemon-system', 'libvirt-clients',
                        'qemu-system-x86', 'qemu-utils', 'genisoimage'):
            self.assertIn(package, packages[1:])
        # Not setup_develop: an editable install can shadow Nova.
        self.assertEqual(
            'setup_install %s' % os.path.join(self.tmp, 'stack', 'nova-kvmx'),
            calls[1])
        # Configuration happens in post-config only.
        with open(self.nova_conf) as f:
            self.assertIn('libvirt.LibvirtDriver', f.read())

    def test_install_warns_about_other_virt_driver(self):
        proc = self._run('stack', 'install', VIRT_DRIVER='fake')

        self.assertIn('VIRT_DRIVER=libvirt', proc.stderr)
        self.assertIn("'fake'", proc.stderr)
        self.assertEqual(2, len(self._calls()))

    def test_install_custom_dir(self):
        custom = os.path.join(self.tmp, 'src', 'nova-kvmx')
        self._run('stack', 'install', NOVA_KVMX_DIR=custom)

        self.assertEqual('setup_install %s' % custom, self._calls()[-1])

    def test_node_without_compute_is_untouched(self):
        with open(self.nova_conf) as f:
            before = f.read()
        for phase in ('install', 'post-config'):
            self._run('stack', phase, ENABLED_SERVICES='key,n-api,n-sch')

        with open(self.nova_conf) as f:
            self.assertEqual(before, f.read())
        self.assertEqual([], self._calls())

    def test_other_phases_do_nothing(self):
        with open(self.nova_conf) as f:
            before = f.read()
        # DevStack runs ``source plugin.sh unstack`` with no phase.
        for args in (('stack', 'pre-install'), ('stack', 'test-config'),
                     ('unstack',), ('clean',)):
            self._run(*args)
        self._run('stack', 'extra', NOVA_KVMX_CREATE_FLAVORS='False')

        with open(self.nova_conf) as f:
            self.assertEqual(before, f.read())
        self.assertEqual([], self._calls())


VF_SPEC = '{"vendor_id": "8086", "product_id": "154c"}'
PF_SPEC = '{"address": "0000:81:00.*", "physical_network": "physnet1"}'
VF_ALIAS = ('{"vendor_id": "8086", "product_id": "154c", '
            '"device_type": "type-VF", "name": "nic-vf"}')
GPU_ALIAS = '{"vendor_id": "10de", "product_id": "1eb8", "name": "t4"}'
NFV_SETTINGS = {
    'NOVA_KVMX_CPU_DEDICATED_SET': '2-7',
    'NOVA_KVMX_CPU_SHARED_SET': '0-1',
    'NOVA_KVMX_RESERVED_HUGE_PAGES':
        'node:0,size:1GB,count:1; node:1,size:2048,count:64',
    'NOVA_KVMX_PCI_DEVICE_SPEC': '%s;%s' % (VF_SPEC, PF_SPEC),
    'NOVA_KVMX_PCI_ALIAS': '%s ; %s' % (VF_ALIAS, GPU_ALIAS),
}


class TestDevstackNFV(DevstackTestCase):
    """The optional NFV settings, read back by Nova's own options."""

    def nova_options(self):
        """nova-cpu.conf as nova-compute reads it (oslo.config with Nova's
        option definitions: multi-valued options get every line)."""
        self._start_nova_compute()
        conf = cfg.ConfigOpts()
        compute_conf.register_opts(conf)
        pci_conf.register_opts(conf)
        conf(args=[], default_config_files=[self.nova_cpu_conf])
        return conf

    def test_post_config_nfv_settings(self):
        self._run('stack', 'post-config', **NFV_SETTINGS)
        conf = self.nova_options()

        self.assertEqual(('2-7', '0-1'), (conf.compute.cpu_dedicated_set,
                                          conf.compute.cpu_shared_set))
        self.assertEqual(
            [{'node': '0', 'size': '1GB', 'count': '1'},
             {'node': '1', 'size': '2048', 'count': '64'}],
            conf.reserved_huge_pages)
        self.assertEqual([VF_SPEC, PF_SPEC], conf.pci.device_spec)
        self.assertEqual([VF_ALIAS, GPU_ALIAS], conf.pci.alias)
        # Nova parses them: the device specs and the reservations (as the
        # driver reads them at start-up).
        specs = whitelist.Whitelist(conf.pci.device_spec).specs
        self.assertEqual(['physnet1'], [
            s.get_tags().get('physical_network') for s in specs
            if s.get_tags().get('physical_network')])
        self.assertEqual([(0, 1048576, 1), (1, 2048, 64)], [
            topology._parse_reservation(entry)
            for entry in conf.reserved_huge_pages])
        # Written as single lines, the rest of the file untouched.
        with open(self.nova_cpu_conf) as f:
            text = f.read()
        self.assertIn('device_spec = %s\n' % VF_SPEC, text)
        self.assertIn('virt_type = kvm\n', text)

    def test_post_config_twice_does_not_repeat_values(self):
        self._run('stack', 'post-config', **NFV_SETTINGS)
        self._run('stack', 'post-config', **NFV_SETTINGS)
        conf = self.nova_options()
        self.assertEqual(2, len(conf.reserved_huge_pages))
        self.assertEqual([VF_SPEC, PF_SPEC], conf.pci.device_spec)
        self.assertEqual([VF_ALIAS, GPU_ALIAS], conf.pci.alias)

    def test_api_node_gets_the_alias_only(self):
        with open(self.nova_conf) as f:
            before = f.read()
        self._run('stack', 'post-config', ENABLED_SERVICES='key,n-api',
                  **NFV_SETTINGS)
        conf = self.nova_options()
        self.assertEqual([VF_ALIAS, GPU_ALIAS], conf.pci.alias)
        self.assertEqual([], conf.pci.device_spec)
        self.assertIsNone(conf.compute.cpu_dedicated_set)
        with open(self.nova_conf) as f:
            self.assertTrue(f.read().startswith(before))

    def flavors(self):
        """{name: (vcpus, ram, {extra spec: value})} of the flavors the
        plugin created."""
        flavors = {}
        for call in self._calls():
            words = call.split()
            if words[:4] != ['openstack', '--os-region-name=RegionOne',
                             'flavor', 'create']:
                continue
            options, name = words[4:-1], words[-1]
            pairs = list(zip(options[::2], options[1::2]))
            specs = dict(v.split('=', 1) for k, v in pairs
                         if k == '--property')
            flat = dict(pairs)
            flavors[name] = (int(flat['--vcpus']), int(flat['--ram']), specs)
        return flavors

    def test_extra_creates_the_example_flavors(self):
        self._run('stack', 'extra', **NFV_SETTINGS)

        flavors = self.flavors()
        self.assertEqual(
            ['kvmx.hugepage', 'kvmx.pinned', 'kvmx.realtime', 'kvmx.sriov'],
            sorted(flavors))
        self.assertEqual({'hw:cpu_policy': 'dedicated'},
                         flavors['kvmx.pinned'][2])
        self.assertEqual('yes', flavors['kvmx.realtime'][2]['hw:cpu_realtime'])
        self.assertEqual('large',
                         flavors['kvmx.hugepage'][2]['hw:mem_page_size'])
        # The first alias's name.
        self.assertEqual({'pci_passthrough:alias': 'nic-vf:1'},
                         flavors['kvmx.sriov'][2])
        # Nova's API accepts every one of them, with the alias configured
        # as the plugin configures it.
        self.useFixture(config_fixture.Config(nova.conf.CONF)).config(
            alias=[VF_ALIAS, GPU_ALIAS], group='pci')
        self.useFixture(fixtures.FakeLogger())
        pci_request.get_alias_from_config.cache_clear()
        self.addCleanup(pci_request.get_alias_from_config.cache_clear)
        for name, (vcpus, ram, specs) in flavors.items():
            built = request.build(vcpus, ram, extra_specs=specs)
            self.assertEqual(name != 'kvmx.sriov',
                             built.numa_topology is not None, name)
        # The configuration phase wrote nothing.
        with open(self.nova_conf) as f:
            self.assertNotIn('kvmx', f.read())

    def test_extra_keeps_existing_flavors(self):
        self._run('stack', 'extra', EXISTING_FLAVORS='kvmx.pinned other')
        self.assertEqual(['kvmx.hugepage', 'kvmx.realtime'],
                         sorted(self.flavors()))
        self.assertIn('openstack --os-region-name=RegionOne flavor show '
                      'kvmx.pinned', self._calls())

    def test_extra_sriov_flavor_with_an_explicit_alias(self):
        self._run('stack', 'extra', NOVA_KVMX_SRIOV_ALIAS='t4')
        self.assertEqual({'pci_passthrough:alias': 't4:1'},
                         self.flavors()['kvmx.sriov'][2])

    def test_extra_only_where_nova_api_runs(self):
        self._run('stack', 'extra', ENABLED_SERVICES='n-cpu', **NFV_SETTINGS)
        self._run('stack', 'extra', NOVA_KVMX_CREATE_FLAVORS='no',
                  **NFV_SETTINGS)
        self.assertEqual([], self._calls())
