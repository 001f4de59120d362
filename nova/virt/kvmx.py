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

"""Shim for Nova's driver loading.

Nova imports ``'nova.virt.' + CONF.compute_driver``, so
``compute_driver = kvmx.KVMXDriver`` resolves to this module. The code lives
in :mod:`nova_kvmx`; this file only re-exports the driver class. It is a
single module so that we never ship ``nova/__init__.py`` or
``nova/virt/__init__.py`` (installing those would overwrite Nova's own).
"""

from nova_kvmx.driver import KVMXDriver

__all__ = ['KVMXDriver']
