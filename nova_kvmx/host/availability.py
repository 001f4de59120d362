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

"""The compute service follows libvirt's availability.

While libvirtd cannot be reached this host cannot run a guest: its compute
service is disabled, with a reason, so the scheduler sends no new builds
here, and enabled again once the connection is back. A service an
operator disabled stays disabled. These are the rules of Nova's libvirt
driver (``LibvirtDriver._set_host_enabled``), repeated here because that
method belongs to its driver and drives its volume mount manager too.
"""

from nova import context as nova_context
from nova import exception
from nova import objects
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

# Nova's prefix of an automatic disable reason (nova.virt.libvirt.driver):
# only a service disabled with it is enabled again automatically.
DISABLE_PREFIX = 'AUTO: '


def set_host_enabled(virtapi, host, enabled, reason=None):
    """Enable or disable the compute service of ``host``; best effort
    (a failure is logged: it runs on libvirt's connection event thread).

    :param virtapi: the driver's ComputeVirtAPI (for the provider's
        COMPUTE_STATUS_DISABLED trait in Placement)
    """
    ctxt = nova_context.get_admin_context()
    try:
        service = objects.Service.get_by_compute_host(ctxt, host)
        if service.disabled == (not enabled):
            return
        if service.disabled and not (service.disabled_reason or '').startswith(
                DISABLE_PREFIX):
            LOG.info('Compute service %s stays disabled: an operator '
                     'disabled it (%s)', host, service.disabled_reason)
            return
        service.disabled = not enabled
        service.disabled_reason = None if enabled else (
            DISABLE_PREFIX + (reason or 'libvirt is unavailable'))
        service.save()
        LOG.warning('Compute service %s %s', host,
                    'enabled' if enabled else 'disabled: %s' % reason)
        virtapi.update_compute_provider_status(
            ctxt, service.compute_node.uuid, enabled=enabled)
    except exception.ComputeHostNotFound:
        # Before its first start the service is not registered yet (and
        # will be, enabled).
        (LOG.debug if enabled else LOG.warning)(
            'Cannot update the status of compute service %s: it is not '
            'registered', host)
    except Exception:
        LOG.warning('Cannot update the status of compute service %s',
                    host, exc_info=True)
