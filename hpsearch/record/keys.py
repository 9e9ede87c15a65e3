"""The name of everything hpsearch stores on Optuna's trials and studies: the only place each is spelled.

Read and written through the record's functions (record/trial.py, study.py, confirm.py), never by name elsewhere
in the package; tests and benchmarks read the stored trials by these names.
"""

# A trial's user attributes. What trains it again (its recipe, recipe.TrialRecord):
CONFIG = "config"  # every parameter the trial trained with
INPUT_SHAPE = "input_shape"  # (C, H, W) the model was built for
CLASSES = "classes"  # the number of classes it was built for
INIT = "init"  # where its weights started, in words (messages and the dashboard)
SOURCE = "source"  # where its weights started, as Init.as_dict() writes it
CODE = "code"  # the user code that built its model and read its data: training/usercode.code_record
# Where it ran:
DEVICE = "device"
TORCH = "torch"
OPTUNA = "optuna"
DATASET_SOURCE = "dataset_source"
WORKER = "worker"  # host:pid of the process that ran it
SLURM = "slurm"  # the SLURM job that ran it: SLURM's job_id, array_job_id, array_task_id and restart_count
RUN = "run"  # the run (one `hpsearch run` and its workers) that ran the trial
BASELINE = "baseline"  # the baseline's name, on a trial queued as one
WARM_START = "warm_start"  # on a trial copied from another study: where from (never counted here)
# How it went:
EPOCHS_TRAINED = "epochs"  # epochs trained (a completed trial's: its recipe's, all of them)
SECONDS = "seconds"  # wall time of the trial
TRAIN_SECONDS = "train_seconds"  # training time, the sum of its epochs
VAL_ACCURACY = "val_accuracy"
TEST_ACCURACY = "test_accuracy"
PARAM_COUNT = "param_count"
TRAINABLE_COUNT = "trainable_count"  # parameters left to train after freezing
COST = "cost"  # what the trial was projected and measured to cost (search/cost.py)
RESUMED_FROM_EPOCH = "resumed_from_epoch"
FAILURE = "failure"  # why a trial failed
OVER_LIMIT = "over_limit"  # why a trial was stopped over one of the study's limits
STOPPED = "stopped"  # why hpsearch stopped a trial early: hopeless, or past the time its run has left
WEIGHTS = "weights_artifact"  # the artifact id of its kept weights
WEIGHTS_NOT_KEPT = "weights_not_kept"  # why a completed trial that earned a place among the kept has no weights
CURVE = "val_curve"  # a two-objective trial's validation accuracy by epoch (curvepruning)
PRUNER_ATTRS = "pruner_attrs"  # curvepruning's per-trial state: what the pruner wrote on its view of the trial
CONFIRM = "confirm"  # on a trial from ranking.study_trials: its retraining with new seeds (confirm.py)

# What a limit (or a second objective) bounds -> the trial attribute that measures it.
MEASURES = {"params": PARAM_COUNT, "train_seconds": TRAIN_SECONDS}

# Optuna's own system attribute of a queued trial, which hpsearch reads (its retry chain: Optuna's helpers read it).
FIXED_PARAMS = "fixed_params"  # the parameters a queued trial was given (enqueue_trial)

# The study's user attributes; split and seed are every trial's record's.
STUDY_SPLIT = "dataset_split"
STUDY_SEED = "seed"
STUDY_DATASET = "dataset"  # the dataset's name
STUDY_EPOCHS = "epochs"  # budget.epochs when the study was made
STUDY_SPEC_PATH = "spec_path"  # the study file it was made from
STUDY_LIMITS = "limits"  # the limits the last run held
STUDY_MADE_WITH = "made_with"  # what decides its trials' results: epochs, data, each parameter's distribution
STUDY_CHANGES = "accepted_changes"  # each change of those a run was told to accept (run --accept-change)
STUDY_STOP_RULES = "stop_rules"  # what ended its runs early, from which trial on: results/trials.py stop_rules_with
STUDY_STOP = "stop_request"  # `hpsearch stop`: who asked, when, which runs it stops, whether queued copies go too
STUDY_ATTRS = (STUDY_SPLIT, STUDY_SEED, STUDY_DATASET, STUDY_EPOCHS, STUDY_SPEC_PATH, STUDY_LIMITS,
               STUDY_MADE_WITH, STUDY_CHANGES, STUDY_STOP_RULES, STUDY_STOP)  # any: hpsearch's
CONFIRMED = "confirm #"  # + a trial's number: its confirmation's results (a trial's own attributes freeze)

# The study's system attributes: hpsearch's bookkeeping, which the dashboard does not list.
CONFIRM_CLAIMS = "hpsearch:confirm_claims"  # "trial:seed" -> {"worker", "at"}
RUN_RECORD = "hpsearch:run "  # + a run's id: what the run was told (its goal, stop rules, heartbeat; its SLURM job)
