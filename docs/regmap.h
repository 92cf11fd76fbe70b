/* Generated from remeco.rtl.regmap; do not edit. */
#ifndef REMECO_REGMAP_H
#define REMECO_REGMAP_H

#define REMECO_ID 0x000u /* ro: Identification, ASCII 'RMCO' */
#define REMECO_ID_RESET 0x524D434Fu
#define REMECO_VERSION 0x004u /* ro: Register map version, major << 16 | minor */
#define REMECO_VERSION_RESET 0x20000u
#define REMECO_CONTROL 0x008u /* wo: Commands (self-clearing) */
#define REMECO_CONTROL_RESET 0x0u
#define REMECO_CONTROL_START_SHIFT 0u
#define REMECO_CONTROL_START_MASK 0x1u
#define REMECO_CONTROL_SOFT_RESET_SHIFT 1u
#define REMECO_CONTROL_SOFT_RESET_MASK 0x2u
#define REMECO_STATUS 0x00Cu /* ro: State of the accelerator */
#define REMECO_STATUS_RESET 0x0u
#define REMECO_STATUS_BUSY_SHIFT 0u
#define REMECO_STATUS_BUSY_MASK 0x1u
#define REMECO_STATUS_DONE_SHIFT 1u
#define REMECO_STATUS_DONE_MASK 0x2u
#define REMECO_STATUS_ERROR_SHIFT 2u
#define REMECO_STATUS_ERROR_MASK 0x4u
#define REMECO_STATUS_GEN_BUSY_SHIFT 3u
#define REMECO_STATUS_GEN_BUSY_MASK 0x8u
#define REMECO_ERROR_CODE 0x010u /* ro: 0 none, 1 bad run description, 2 load beyond a memory, 3 command while busy */
#define REMECO_ERROR_CODE_RESET 0x0u
#define REMECO_CYCLES_LO 0x014u /* ro: Cycles spent in runs, low word (latches the high word) */
#define REMECO_CYCLES_LO_RESET 0x0u
#define REMECO_CYCLES_HI 0x018u /* ro: Cycle counter, high word as latched by CYCLES_LO */
#define REMECO_CYCLES_HI_RESET 0x0u
#define REMECO_CAP_CODE_WORDS 0x020u /* ro: Words of the code and fault memories (elaboration) */
#define REMECO_CAP_CODE_WORDS_RESET 0x0u
#define REMECO_CAP_DESC_WORDS 0x024u /* ro: Words of the column-descriptor memory (elaboration) */
#define REMECO_CAP_DESC_WORDS_RESET 0x0u
#define REMECO_CAP_COLUMN_LANES 0x028u /* ro: Physical columns computed at once, cells per memory word */
#define REMECO_CAP_COLUMN_LANES_RESET 0x0u
#define REMECO_CAP_VECTOR_LANES 0x02Cu /* ro: Input vectors computed at once */
#define REMECO_CAP_VECTOR_LANES_RESET 0x0u
#define REMECO_CAP_MAX_FAN_IN 0x030u /* ro: Largest LAYER_FAN_IN (input buffer depth) */
#define REMECO_CAP_MAX_FAN_IN_RESET 0x0u
#define REMECO_CAP_TILE_ROWS 0x034u /* ro: Rows of a crossbar tile (rows converted together) */
#define REMECO_CAP_TILE_ROWS_RESET 0x0u
#define REMECO_CAP_FORMAT 0x038u /* ro: Numeric format the fabric was built for */
#define REMECO_CAP_FORMAT_RESET 0x0u
#define REMECO_CAP_FORMAT_INPUT_BITS_SHIFT 0u
#define REMECO_CAP_FORMAT_INPUT_BITS_MASK 0xFu
#define REMECO_CAP_FORMAT_CODE_BITS_SHIFT 4u
#define REMECO_CAP_FORMAT_CODE_BITS_MASK 0x1F0u
#define REMECO_CAP_FORMAT_CODE_FRAC_SHIFT 9u
#define REMECO_CAP_FORMAT_CODE_FRAC_MASK 0x1E00u
#define REMECO_CAP_FORMAT_ADC_BITS_SHIFT 13u
#define REMECO_CAP_FORMAT_ADC_BITS_MASK 0x3E000u
#define REMECO_CAP_FORMAT_SLICE_BITS_SHIFT 18u
#define REMECO_CAP_FORMAT_SLICE_BITS_MASK 0x3C0000u
#define REMECO_CAP_FORMAT_N_SLICES_SHIFT 22u
#define REMECO_CAP_FORMAT_N_SLICES_MASK 0x3C00000u
#define REMECO_CAP_FORMAT_MAX_COPIES_LOG2_SHIFT 26u
#define REMECO_CAP_FORMAT_MAX_COPIES_LOG2_MASK 0x3C000000u
#define REMECO_LAYER_FAN_IN 0x040u /* rw: Inputs per vector K of the run, 1..CAP_MAX_FAN_IN */
#define REMECO_LAYER_FAN_IN_RESET 0x0u
#define REMECO_LAYER_COLUMNS 0x044u /* rw: Physical columns P of the layer (all copies, slices) */
#define REMECO_LAYER_COLUMNS_RESET 0x0u
#define REMECO_LAYER_NEURONS 0x048u /* rw: Neurons N of the layer (outputs per vector) */
#define REMECO_LAYER_NEURONS_RESET 0x0u
#define REMECO_LAYER_CODE_BASE 0x04Cu /* rw: First code-memory word of the layer */
#define REMECO_LAYER_CODE_BASE_RESET 0x0u
#define REMECO_LAYER_DESC_BASE 0x050u /* rw: First descriptor-memory word of the layer */
#define REMECO_LAYER_DESC_BASE_RESET 0x0u
#define REMECO_LAYER_ADC_SHIFT 0x054u /* rw: ADC shift of the layer, 0..31 */
#define REMECO_LAYER_ADC_SHIFT_RESET 0x0u
#define REMECO_LAYER_VECTORS 0x058u /* rw: Input vectors V of the run (>= 1) */
#define REMECO_LAYER_VECTORS_RESET 0x0u
#define REMECO_STREAM_TARGET 0x060u /* rw: Destination of MM2S words: 0 run inputs, 1 codes, 2 fault map, 3 descriptors */
#define REMECO_STREAM_TARGET_RESET 0x0u
#define REMECO_LOAD_ADDRESS 0x064u /* rw: Memory word the next loaded word goes to (auto-increments) */
#define REMECO_LOAD_ADDRESS_RESET 0x0u
#define REMECO_CODE_ON 0x070u /* rw: Code read from stuck-on cells (signed, low code_bits used) */
#define REMECO_CODE_ON_RESET 0x0u
#define REMECO_CODE_OFF 0x074u /* rw: Code read from stuck-off cells (signed, low code_bits used) */
#define REMECO_CODE_OFF_RESET 0x0u
#define REMECO_FAULT_SEED 0x078u /* rw: Fault generator seed (0 acts as 1) */
#define REMECO_FAULT_SEED_RESET 0x1u
#define REMECO_FAULT_RATE 0x07Cu /* rw: Fault-rate threshold in [0, 65536] (65536 = always) */
#define REMECO_FAULT_RATE_RESET 0x0u
#define REMECO_FAULT_ON_FRACTION 0x080u /* rw: Stuck-on threshold in [0, 65536] */
#define REMECO_FAULT_ON_FRACTION_RESET 0x0u
#define REMECO_FAULT_WORDS 0x084u /* rw: Fault-memory words [0, FAULT_WORDS) the generator covers */
#define REMECO_FAULT_WORDS_RESET 0x0u
#define REMECO_FAULT_CONTROL 0x088u /* rw: Fault map commands and enable */
#define REMECO_FAULT_CONTROL_RESET 0x0u
#define REMECO_FAULT_CONTROL_GENERATE_SHIFT 0u
#define REMECO_FAULT_CONTROL_GENERATE_MASK 0x1u
#define REMECO_FAULT_CONTROL_CLEAR_SHIFT 1u
#define REMECO_FAULT_CONTROL_CLEAR_MASK 0x2u
#define REMECO_FAULT_CONTROL_ENABLE_SHIFT 2u
#define REMECO_FAULT_CONTROL_ENABLE_MASK 0x4u

#define REMECO_ERR_NONE 0u /* none */
#define REMECO_ERR_BAD_RUN 1u /* bad run description */
#define REMECO_ERR_LOAD_RANGE 2u /* load beyond a memory */
#define REMECO_ERR_BUSY 3u /* command while busy */

#define REMECO_DESC_SLICE_SHIFT 0u
#define REMECO_DESC_SLICE_MASK 0xFu
#define REMECO_DESC_K_SHIFT 4u
#define REMECO_DESC_K_MASK 0xF0u
#define REMECO_DESC_FIRST_SHIFT 8u
#define REMECO_DESC_FIRST_MASK 0x100u
#define REMECO_DESC_LAST_SHIFT 9u
#define REMECO_DESC_LAST_MASK 0x200u
#define REMECO_DESC_END_SHIFT 10u
#define REMECO_DESC_END_MASK 0x400u

#endif /* REMECO_REGMAP_H */
