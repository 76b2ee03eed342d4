package android.os

class Bundle

class Build {
    object VERSION {
        @JvmField val SDK_INT: Int = 0
    }
    object VERSION_CODES {
        const val P = 28
        const val Q = 29
        const val R = 30
        const val TIRAMISU = 33
    }
}
