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

# Sphinx configuration of the nova-kvmx release notes (tox -e releasenotes).
# The notes themselves are YAML files in releasenotes/notes/, written with
# ``reno new <slug>`` and rendered by reno's Sphinx extension.

# -- General configuration ------------------------------------------------

extensions = [
    'reno.sphinxext',
]

templates_path = ['_templates']
source_suffix = '.rst'
master_doc = 'index'

project = 'nova-kvmx Release Notes'
copyright = '2026, nova-kvmx developers'
author = 'nova-kvmx developers'

# The release notes are not versioned themselves: reno takes the versions
# from the git tags.
version = ''
release = ''

exclude_patterns = []
pygments_style = 'sphinx'

# -- Options for HTML output ----------------------------------------------

html_theme = 'alabaster'
html_static_path = ['_static']
htmlhelp_basename = 'NovaKVMXReleaseNotesdoc'

# -- Options for Internationalization output ------------------------------

locale_dirs = ['locale/']
