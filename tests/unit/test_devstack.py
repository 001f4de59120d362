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
against stubs of the DevStack functions it calls. The ``iniset`` stub
really writes the INI file (with Python's configparser), so the tests read
back the configuration Nova would get.
"""

import configparser
import os
import shutil
import subprocess
import sys
import tempfile

import testtools

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEVSTACK_DIR = os.path.join(REPO_ROOT, 'devstack')
PLUGIN = os.path.join(DEVSTACK_DIR, 'plugin.sh')
SETTINGS = os.path.join(DEVSTACK_DIR, 'settings')
TIMEOUT = 60

# Stubs of the DevStack functions the plugin uses. ``iniset`` has DevStack's
# signature (``iniset [-sudo] file section option value``); the install
# helpers only record their arguments in $CALLS_LOG.
STUBS = r'''
function is_service_enabled {
    local service
    for service in "$@"; do
        [[ ",${ENABLED_SERVICES}," == *",${service},"* ]] && return 0
    done
    return 1
}
function echo_summary { echo "summary: $*" >&2; }
function warn { echo "warn: $*" >&2; }
function die { echo "die: $*" >&2; exit 1; }
function install_package { echo "install_package $*" >> "$CALLS_LOG"; }
function setup_install { echo "setup_install $*" >> "$CALLS_LOG"; }
function setup_develop { echo "setup_develop $*" >> "$CALLS_LOG"; }
function pip_install { echo "pip_install $*" >> "$CALLS_LOG"; }
function iniset {
    if [[ "$1" == "-sudo" ]]; then
        shift
    fi
    "$PYTHON" - "$@" <<'PY'
import configparser
import sys

path, section, option, value = sys.argv[1:5]
parser = configparser.ConfigParser(interpolation=None)
parser.optionxform = str
parser.read(path)
if section != 'DEFAULT' and not parser.has_section(section):
    parser.add_section(section)
parser.set(section, option, value)
with open(path, 'w') as f:
    parser.write(f)
PY
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


class TestDevstackPlugin(testtools.TestCase):

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
        parser = configparser.ConfigParser(interpolation=None)
        self.assertEqual([self.nova_cpu_conf],
                         parser.read(self.nova_cpu_conf))
        return parser

    def _calls(self):
        if not os.path.exists(self.calls_log):
            return []
        with open(self.calls_log) as f:
            return f.read().splitlines()

    def test_post_config(self):
        self._run('stack', 'post-config',
                  NOVA_KVMX_VIRT_TYPE='qemu',
                  NOVA_KVMX_CONNECTION_URI='qemu+tcp://localhost/system',
                  NOVA_KVMX_CPU_DEDICATED_SET='4-7,^6',
                  NOVA_KVMX_CPU_SHARED_SET='2-3')
        conf = self._start_nova_compute()

        self.assertEqual('kvmx.KVMXDriver',
                         conf.get('DEFAULT', 'compute_driver'))
        self.assertEqual('qemu', conf.get('kvmx', 'virt_type'))
        self.assertEqual('qemu+tcp://localhost/system',
                         conf.get('kvmx', 'connection_uri'))
        self.assertEqual('4-7,^6', conf.get('compute', 'cpu_dedicated_set'))
        self.assertEqual('2-3', conf.get('compute', 'cpu_shared_set'))
        # What was there before is kept.
        self.assertEqual('True', conf.get('DEFAULT', 'debug'))
        self.assertEqual('kvm', conf.get('libvirt', 'virt_type'))
        self.assertEqual([], self._calls())

    def test_post_config_defaults(self):
        self._run('stack', 'post-config')
        conf = self._start_nova_compute()

        self.assertEqual('kvmx.KVMXDriver',
                         conf.get('DEFAULT', 'compute_driver'))
        expected_virt_type = 'kvm' if os.path.exists('/dev/kvm') else 'qemu'
        self.assertEqual(expected_virt_type, conf.get('kvmx', 'virt_type'))
        self.assertEqual('qemu:///system',
                         conf.get('kvmx', 'connection_uri'))
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
        for args in (('stack', 'pre-install'), ('stack', 'extra'),
                     ('stack', 'test-config'), ('unstack',), ('clean',)):
            self._run(*args)

        with open(self.nova_conf) as f:
            self.assertEqual(before, f.read())
        self.assertEqual([], self._calls())
