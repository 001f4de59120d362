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

"""Configuration of nova-kvmx: the ``[kvmx]`` group.

Only what is specific to this driver lives here. Everything Nova already has
an option for is read from Nova's own option (``[DEFAULT] instances_path``,
``[image_cache] subdirectory_name``, ``[DEFAULT] shutdown_timeout``,
``[vnc]``, ``[compute] cpu_shared_set``, reserved values and allocation
ratios, ...), so an operator configures a host the same way for this driver
as for Nova's libvirt driver.
"""

import nova.conf

from nova_kvmx.conf import kvmx

CONF = nova.conf.CONF
kvmx.register_opts(CONF)


def list_opts():
    """Options for oslo-config-generator (entry point ``oslo.config.opts``)."""
    return kvmx.list_opts()
