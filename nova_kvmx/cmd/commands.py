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

"""The commands behind ``nova-kvmx``'s arguments (:mod:`main` parses).

Where explain reads the host's usage (``--usage``): Nova's database when
``[database] connection`` is set and the database answers (what the
scheduler sees: the compute node record), else the host's libvirt
domains (what Nova claimed, as the driver rendered it), else a saved
usage file; the answer says which.
"""

import logging
import sys

from nova import exception
from nova import objects
from nova.pci import request as pci_request
from oslo_config import cfg

from nova_kvmx import conf as kvmx_conf
from nova_kvmx.cmd import domains
from nova_kvmx.cmd import explain
from nova_kvmx.cmd import fleet
from nova_kvmx.cmd import host_check
from nova_kvmx.cmd import hostdata
from nova_kvmx.cmd import hostview
from nova_kvmx.cmd import novadb
from nova_kvmx.cmd import report
from nova_kvmx.cmd import request
from nova_kvmx.cmd import usage as host_usage
from nova_kvmx.cmd import usagefile
from nova_kvmx.host import options
from nova_kvmx.host import resources

CONF = kvmx_conf.CONF
EXIT_BAD_INPUT = 2


def load_config(config_files):
    """Nova's CONF from the node's files."""
    CONF(args=[], project='nova', default_config_files=config_files)
    # Nova parses [pci] alias once per process; this may be a new config.
    pci_request.get_alias_from_config.cache_clear()


def setup_logging(debug):
    logging.basicConfig(
        stream=sys.stderr, format='%(levelname)s %(name)s: %(message)s',
        level=logging.DEBUG if debug else logging.WARNING)
    # Nova's fitting warns about what explain reports as a reason. (Set
    # both ways: a served answer's process inherits the server's level.)
    logging.getLogger('nova.virt.hardware').setLevel(
        logging.NOTSET if debug else logging.ERROR)


def _local_gb():
    try:
        return resources.disk_gb(CONF.instances_path)[0]
    except OSError:
        return None


def _bad(reason):
    return exception.InvalidInput(reason=reason)


def read_usage(args, facts):
    """The :class:`usage.Usage` of the host, from the source asked for
    (see the module's doc)."""
    if args.usage_file:
        if args.usage not in ('auto',):
            raise _bad('--usage-file and --usage %s exclude each other'
                       % args.usage)
        return usagefile.load(args.usage_file)
    if args.usage == 'none':
        return host_usage.empty('none (--usage none): the host is taken '
                                'as empty')
    if args.capabilities and args.usage == 'libvirt':
        raise _bad('--usage libvirt reads a live libvirt, not '
                   '--capabilities (save its usage there with '
                   '--save-usage, then give it with --usage-file)')
    if args.capabilities and args.usage == 'auto':
        return host_usage.empty('none: a saved host is taken as empty '
                                'unless --usage-file gives its usage')
    url = CONF.database.connection
    fallback = None
    if url and args.usage in ('auto', 'database'):
        try:
            return novadb.local_usage(url, args.host or CONF.host,
                                      args.node or facts.nodename)[1]
        except (novadb.DatabaseUnreachable, novadb.NodeNotFound) as ex:
            if args.usage == 'database':
                raise
            fallback = ex.format_message()
    elif args.usage == 'database':
        raise _bad('--usage database needs [database] connection in the '
                   'nova.conf given (the cell database of this host)')
    found = domains.usage_from_domains(
        facts.domains or [], hostview.host_numa(facts),
        'libvirt domains at %s' % facts.source)
    if fallback:
        found.notes.insert(0, 'Usage from libvirt\'s domains: %s' %
                           fallback)
    return found


def _requests(args):
    """[(name, ServerRequest or the NovaException refusing it)]."""
    if args.flavors:
        wanted = request.load_flavors(args.flavors)
    else:
        wanted = [('explain', {
            'vcpus': args.vcpus, 'memory_mb': args.ram,
            'disk_gb': args.disk,
            'extra_specs': request.parse_pairs(args.extra_spec,
                                               '--extra-spec'),
            'image_properties': request.parse_pairs(args.image_property,
                                                    '--image-property')})]
    result = []
    for name, kwargs in wanted:
        try:
            result.append((name, request.build(**kwargs)))
        except exception.NovaException as ex:
            if not args.flavors:
                raise
            result.append((name, ex))
    return result


def _host(args):
    if args.node_devices and not args.capabilities:
        raise _bad('--node-devices needs --capabilities')
    if args.capabilities:
        return hostdata.from_files(args.capabilities, args.node_devices), None
    facts = hostdata.from_libvirt(
        args.connection_uri or options.connection_uri(CONF), with_domains=True)
    return facts, _local_gb()


def run_explain(args, out):
    if args.all_hosts:
        return fleet.run(args, _requests(args), out)
    requests = _requests(args)
    facts, local_gb = _host(args)
    usage = read_usage(args, facts)
    if args.save_usage:
        usagefile.save(usage, args.save_usage)
    view = hostview.from_facts(facts, usage, local_gb)
    answers = []
    for name, req in requests:
        if isinstance(req, exception.NovaException):
            answers.append((name, EXIT_BAD_INPUT, req.format_message(),
                            None))
            continue
        result = explain.explain_view(view, req)
        xml = None
        if args.xml and result.fits:
            xml = explain.domain_xml(facts, req, result.fitted)
        answers.append((name, 0 if result.fits else 1, result, xml))
    if not args.flavors:
        _name, status, result, xml = answers[0]
        if args.format == 'json':
            out.write(report.to_json(dict(result.as_dict(),
                                          domain_xml=xml)) + '\n')
        else:
            out.write('\n'.join(report.explanation_lines(
                result.as_dict())) + '\n')
            if xml:
                out.write('\nDomain XML:\n%s\n' % xml)
        return status
    return _batch_output(args, answers, out)


def _batch_output(args, answers, out):
    if args.format == 'json':
        out.write(report.to_json([
            dict({'name': name, 'status': status},
                 **({'error': result} if status == EXIT_BAD_INPUT else
                    dict(result.as_dict(), domain_xml=xml)))
            for name, status, result, xml in answers]) + '\n')
    else:
        out.write('\n'.join(report.batch_lines(
            [(name, status, result if status == EXIT_BAD_INPUT
              else result.as_dict()) for name, status, result, _xml
             in answers])) + '\n')
    statuses = {status for _name, status, _result, _xml in answers}
    return max(statuses)


def run_host_check(args, out):
    results = host_check.run(
        args.root, args.connection_uri or options.connection_uri(CONF))
    if args.format == 'json':
        out.write(report.to_json([r.as_dict() for r in results]) + '\n')
    else:
        out.write('\n'.join(report.check_lines(results)) + '\n')
    return 1 if any(r.status == host_check.FAIL for r in results) else 0


def prepare():
    """What every command needs first, once per process."""
    objects.register_all()


def run(args, out, err):
    setup_logging(args.debug)
    prepare()
    if args.command == 'explain' and args.serve:
        from nova_kvmx.cmd import serve
        return serve.serve(args.serve, err)
    try:
        load_config(args.config_file)
        if args.command == 'explain':
            return run_explain(args, out)
        return run_host_check(args, out)
    except (exception.NovaException, cfg.Error) as ex:
        message = (ex.format_message()
                   if isinstance(ex, exception.NovaException) else str(ex))
        err.write('nova-kvmx %s: error: %s\n' % (args.command, message))
        return EXIT_BAD_INPUT
