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

"""A server request (flavor and image), as Nova's API and scheduler see it.

The flavor's extra specs are checked by Nova's extra-spec validators (what
``openstack flavor set --property`` runs), flavor and image together by
the ``nova.virt.hardware`` checks Nova's API runs before it accepts a boot
(``API._validate_flavor_image_numa_pci``); the NUMA topology, PCI requests
and Placement query are then Nova's own: ``numa_get_constraints``,
``get_pci_requests_from_flavor`` and ``resources_from_request_spec``.
Bad input is a Nova exception with Nova's message.
"""

import dataclasses
from urllib import parse

from nova.api.validation.extra_specs import validators
from nova import context as nova_context
from nova import exception
from nova import objects
from nova.pci import request as pci_request
from nova.scheduler import utils as scheduler_utils
from nova.virt import hardware

# Placement consumer of the request: any valid UUID (nothing is stored).
_INSTANCE_UUID = '00000000-0000-4000-8000-00000000e091'


@dataclasses.dataclass
class ServerRequest:
    flavor: 'objects.Flavor'
    image_meta: 'objects.ImageMeta'
    numa_topology: 'objects.InstanceNUMATopology | None'
    pci_requests: 'objects.InstancePCIRequests'
    spec: 'objects.RequestSpec'
    placement_query: str
    ignored_image_properties: list


def parse_pairs(pairs, what):
    """{key: value} of ``key=value`` arguments.

    :raises: InvalidInput naming the malformed argument
    """
    result = {}
    for pair in pairs or ():
        key, sep, value = pair.partition('=')
        if not sep or not key.strip():
            raise exception.InvalidInput(
                reason='%s %r is not of the form key=value' % (what, pair))
        result[key.strip()] = value.strip()
    return result


def validate_extra_specs(extra_specs):
    """Nova's API validation of flavor extra specs (unknown ``hw:`` keys,
    malformed values), raising Nova's ValidationError."""
    if not validators.VALIDATORS:
        validators.load_validators()
    for name, value in sorted(extra_specs.items()):
        try:
            validators.validate(name, value)
        except exception.ValidationError as ex:
            # Nova's message does not always name the spec (the API
            # answers one flavor update at a time); here it must.
            message = ex.format_message()
            if name not in message:
                message = '%s=%s: %s' % (name, value, message)
            raise exception.ValidationError(detail=message) from ex


def image_meta(properties):
    """ImageMeta of the properties, and the names Nova does not know (it
    ignores them, so they change nothing)."""
    try:
        meta = objects.ImageMeta.from_dict({'properties': properties})
    except ValueError as ex:
        # As Nova's API words it.
        raise exception.InvalidRequest('Invalid image metadata. Error: %s'
                                       % ex)
    known = set(meta.properties.obj_fields)
    ignored = sorted(name for name in properties
                     if name not in known and not name.startswith('trait:'))
    return meta, ignored


def _check_like_nova_api(flavor, meta):
    """The checks of Nova's ``API._validate_flavor_image_numa_pci``."""
    hardware.get_mem_encryption_constraint(flavor, meta)
    hardware.get_pmu_constraint(flavor, meta)
    hardware.get_number_of_serial_ports(flavor, meta)
    hardware.get_realtime_cpu_constraint(flavor, meta)
    hardware.get_cpu_topology_constraints(flavor, meta)
    hardware.get_vif_multiqueue_constraint(flavor, meta)


def build(vcpus, memory_mb, disk_gb=0, extra_specs=None,
          image_properties=None):
    """The :class:`ServerRequest` of a flavor and image properties.

    :raises: a NovaException subclass with Nova's own message for any
        input Nova's API would refuse
    """
    extra_specs = dict(extra_specs or {})
    validate_extra_specs(extra_specs)
    meta, ignored = image_meta(dict(image_properties or {}))
    flavor = objects.Flavor(
        name='explain', flavorid='explain', vcpus=vcpus, memory_mb=memory_mb,
        root_gb=disk_gb, ephemeral_gb=0, swap=0, extra_specs=extra_specs)
    _check_like_nova_api(flavor, meta)
    numa = hardware.numa_get_constraints(flavor, meta)
    pci_requests = pci_request.get_pci_requests_from_flavor(
        flavor, affinity_policy=hardware.get_pci_numa_policy_constraint(
            flavor, meta))
    # is_admin given: otherwise the context would load Nova's API policy.
    context = nova_context.RequestContext(
        user_id='explain', project_id='explain', is_admin=False)
    spec = objects.RequestSpec.from_components(
        context, _INSTANCE_UUID, meta, flavor, numa, pci_requests, {}, None,
        None)
    query = scheduler_utils.resources_from_request_spec(
        context, spec, host_manager=None).to_querystring()
    return ServerRequest(
        flavor=flavor, image_meta=meta, numa_topology=numa,
        pci_requests=pci_requests, spec=spec, placement_query=query,
        ignored_image_properties=ignored)


@dataclasses.dataclass
class PlacementAsk:
    """What ``GET /allocation_candidates`` is asked, from its query."""

    resources: dict
    required_traits: list
    forbidden_traits: list
    any_of_traits: list


def placement_ask(query):
    """Resources (summed over request groups: one provider here) and traits
    of a Placement query string."""
    resources, required, forbidden, any_of = {}, set(), set(), []
    for key, value in parse.parse_qsl(query):
        if key.startswith('resources'):
            for item in value.split(','):
                rc, _, amount = item.partition(':')
                resources[rc] = resources.get(rc, 0) + int(amount)
        elif key.startswith('required') or key == 'root_required':
            if value.startswith('in:'):
                any_of.append(sorted(value[3:].split(',')))
                continue
            for trait in value.split(','):
                if trait.startswith('!'):
                    forbidden.add(trait[1:])
                else:
                    required.add(trait)
    return PlacementAsk(resources=resources, required_traits=sorted(required),
                        forbidden_traits=sorted(forbidden),
                        any_of_traits=any_of)


def load_flavors(path):
    """[(name, build() keyword arguments)] of a flavors file: a YAML or
    JSON list (or {flavors: [...]}) of {name, vcpus, ram, disk,
    extra_specs, image_properties}.

    :raises: InvalidInput naming the file and the entry
    """
    import yaml  # only batches need it

    def bad(reason):
        return exception.InvalidInput(reason='flavors file %s: %s' % (
            path, reason))

    try:
        with open(path, 'rb') as f:
            data = yaml.safe_load(f)
    except OSError as ex:
        raise bad(ex.strerror or ex)
    except yaml.YAMLError as ex:
        raise bad('not YAML or JSON: %s' % str(ex).replace('\n', ' '))
    if isinstance(data, dict):
        data = data.get('flavors')
    if not isinstance(data, list) or not data:
        raise bad('expected a list of flavors (or {flavors: [...]})')
    result = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise bad('entry %d is not a mapping' % index)
        name = str(entry.get('name', '#%d' % index))
        try:
            kwargs = {
                'vcpus': int(entry['vcpus']),
                'memory_mb': int(entry['ram'] if 'ram' in entry
                                 else entry['memory_mb'] if 'memory_mb' in
                                 entry else entry['ram']),
                'disk_gb': int(entry.get('disk', 0)),
                'extra_specs': {str(k): str(v) for k, v in dict(
                    entry.get('extra_specs') or {}).items()},
                'image_properties': {str(k): str(v) for k, v in dict(
                    entry.get('image_properties') or {}).items()},
            }
        except KeyError as ex:
            raise bad('%s: %s is missing' % (name, ex))
        except (TypeError, ValueError) as ex:
            raise bad('%s: %s' % (name, ex))
        result.append((name, kwargs))
    return result
