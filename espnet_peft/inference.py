"""ESPnet's own inference on a PEFT experiment, unmerged, with per-utterance adapter routing: the
runner behind ``espnet_peft.bin.asr_inference`` / ``s2t_inference`` (see :func:`run_inference`)."""
from __future__ import annotations


def run_inference(name: str, cmd=None) -> None:
    """ESPnet's own ``espnet2.bin.<name>_inference`` on a PEFT experiment: the experiment's frozen
    PEFT config is used (``peft_config.yaml`` beside the config), model and LM files load with
    ``weights_only=True``, and audio at another sample rate than the model's frontend, or with
    more than one channel, is refused before the model is loaded.

    Routing: ``--adapter NAME=CHECKPOINT`` (repeatable; any method, ``.pth`` states or
    ``.safetensors`` adapter files) with ``--utt2adapter FILE`` decodes each utterance with its
    adapter (``base``: the frozen model) on one load of the pretrained model that
    ``--{name}_train_config`` / ``--{name}_model_file`` name; every utterance's adapter and every
    adapter's pretrained model are checked before any decoding (``espnet_peft.routing``)."""
    import importlib
    import sys

    from .errors import PeftError
    from .loading import weights_only_loads
    from .methods import register_with_espnet
    from .preflight import check_inference_data
    from .routing import TRUST_FLAG, Router, split_routing_args
    from .tasks import stock_task, task_of

    prog = f"espnet_peft.bin.{name}_inference"
    argv = list(sys.argv[1:] if cmd is None else cmd)
    stock = importlib.import_module(f"espnet2.bin.{name}_inference")
    try:
        trust = TRUST_FLAG in argv
        specs, utt2adapter, argv = split_routing_args(argv)
        router = Router(specs, utt2adapter, trust_unverified=trust) if specs or utt2adapter else None
    except PeftError as e:
        raise SystemExit(f"{prog}: error: {e}") from None
    parser = stock.get_parser()
    add_routing_options(parser)  # parsed above (split_routing_args); here for --help
    args = parser.parse_args(argv)
    try:
        check_inference_data(args.data_path_and_name_and_type, getattr(args, f"{name}_train_config"))
    except PeftError as e:
        raise SystemExit(f"{prog}: error: {e}") from None
    if router is not None:
        check_routed_data(prog, router, args)
    register_with_espnet()
    task = task_of({}, name)
    stock_name = stock_task(task.__name__).__name__
    if router is not None:
        task = routed_task(task, router, prog)
    original = getattr(stock, stock_name)
    setattr(stock, stock_name, task)  # build_model_from_file rebuilds the wrapped model
    try:
        with weights_only_loads():
            stock.main(argv)
    except PeftError as e:  # a refusal while the model loads (another base model, a frozen config...)
        raise SystemExit(f"{prog}: error: {e}") from None
    finally:  # (in one process, a later stock decoding is stock again)
        setattr(stock, stock_name, original)


def add_routing_options(parser) -> None:
    """The routing options in ``--help``, with ESPnet's own (they are taken out of the command line
    before ESPnet's parser sees it)."""
    group = parser.add_argument_group("espnet-peft routing (one model load, an adapter per utterance)")
    group.add_argument("--adapter", action="append", metavar="NAME=CHECKPOINT",
                       help="an adapter to route to: a .pth adapter state or .safetensors adapter file (repeatable)")
    group.add_argument("--utt2adapter", metavar="FILE",
                       help="utterance id -> adapter NAME (or base: the frozen model) for every utterance decoded")
    group.add_argument("--trust_unverified", action="store_true",
                       help="load adapters without a tensor digest, config record or fingerprint table (warned)")


def check_routed_data(prog: str, router, args) -> None:
    """Before any model is loaded: one utterance per batch (the adapter is chosen per utterance), and
    every utterance of the data (or of ``--key_file``) routed to a known adapter."""
    from .errors import PeftError
    from .routing import data_keys

    if args.batch_size != 1:
        raise SystemExit(f"{prog}: error: routing decodes one utterance at a time: --batch_size 1, "
                         f"not {args.batch_size}")
    first = args.data_path_and_name_and_type[0]
    table = getattr(args, "key_file", None) or (first[0] if isinstance(first, (tuple, list)) else str(first).split(",")[0])
    try:
        router.check_keys(data_keys(table), where=str(table))
    except (PeftError, OSError) as e:
        raise SystemExit(f"{prog}: error: {e}") from None


def routed_task(task, router, prog: str):
    """``task`` with an adapter bank on the model it builds for decoding, switched to each utterance's
    adapter as the data iterator hands the utterance over (ESPnet decodes a batch before it asks for
    the next one)."""
    from .errors import PeftError

    class Routed(task):
        @classmethod
        def build_model_from_file(cls, config_file=None, model_file=None, device: str = "cpu"):
            model, train_args = super().build_model_from_file(config_file, model_file, device)
            try:
                router.attach(model)
            except PeftError as e:
                raise SystemExit(f"{prog}: error: {e}") from None
            if device != "mps":
                model.to(device)
            return model, train_args

        @classmethod
        def build_streaming_iterator(cls, *args, **kwargs):
            loader = super().build_streaming_iterator(*args, **kwargs)

            def routed():
                for keys, batch in loader:
                    router.select(keys[0])
                    yield keys, batch
            return routed()

    Routed.__name__ = Routed.__qualname__ = f"Routed{task.__name__}"
    return Routed
