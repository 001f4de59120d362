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

"""The committed sample configuration matches the ``[kvmx]`` options.

The sample is regenerated from the source tree (not from an installed copy
of the package) into a temporary file and compared with the committed one,
so a change to an option's default or help text fails here until the sample
is regenerated too.
"""

import os
import subprocess
import sys
import tempfile

import testtools

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
GENERATOR_CONF = os.path.join('etc', 'nova-kvmx',
                              'nova-kvmx-config-generator.conf')
SAMPLE = os.path.join('etc', 'nova-kvmx', 'nova-kvmx.conf.sample')

# What a developer runs, from the repository root, to refresh the sample.
# ``python -m`` puts the current directory first on sys.path, so the options
# come from the tree even when an older copy of the package is installed
# (the ``oslo-config-generator`` script would import the installed copy).
REGENERATE = ('python -m oslo_config.generator --config-file %s '
              '(from the repository root; or: tox -e genconfig)'
              % GENERATOR_CONF)


class TestConfigSample(testtools.TestCase):

    def _generate(self, output_file):
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            [REPO_ROOT] + ([env['PYTHONPATH']] if env.get('PYTHONPATH')
                           else []))
        proc = subprocess.run(
            [sys.executable, '-m', 'oslo_config.generator',
             '--config-file', GENERATOR_CONF,
             '--output-file', output_file],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True,
            timeout=120)
        self.assertEqual(
            0, proc.returncode,
            'oslo-config-generator failed (is nova-kvmx installed, so that '
            'its oslo.config.opts entry point exists?):\n%s%s'
            % (proc.stdout, proc.stderr))

    def test_sample_is_up_to_date(self):
        with tempfile.TemporaryDirectory() as tmp:
            generated_path = os.path.join(tmp, 'nova-kvmx.conf.sample')
            self._generate(generated_path)
            with open(generated_path, encoding='utf-8') as f:
                generated = f.read()
        with open(os.path.join(REPO_ROOT, SAMPLE), encoding='utf-8') as f:
            committed = f.read()

        self.assertIn('[kvmx]', generated)
        self.assertIn('#virt_type = kvm', generated)
        self.assertEqual(
            generated, committed,
            '%s is out of date with the [kvmx] options. Regenerate it with: '
            '%s' % (SAMPLE, REGENERATE))
